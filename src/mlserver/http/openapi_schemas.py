"""The components of the OpenAPI document: request schemas from the parameter table, answer
and error schemas. Every function builds new dicts, so no two documents share a member."""

from __future__ import annotations

from typing import Any

from mlserver.frames.orients import ORIENTS
from mlserver.http.openapi_history import history_schemas
from mlserver.http.openapi_v2 import v2_schemas
from mlserver.http.parameters import BODY, key_schema, taken_by
from mlserver.wrapper import ModelWrapper

__all__ = ["REQUESTS", "error", "errors", "json_content", "ref", "schemas"]

#: The component holding the JSON request body of each verb that takes one.
REQUESTS = (
    ("PUT", "FitRequest"),
    ("POST", "PredictRequest"),
    ("PATCH", "UpdateRequest"),
    ("DELETE", "DeleteRequest"),
)

_ERRORS = (
    ("400", "A parameter is missing or malformed; `parameter` names it."),
    ("404", "Unknown model, or a model-key with no versions."),
    ("409", "The key is not ready for this; `status` is the blocking status."),
    ("413", "The request body is above the configured limit."),
    ("415", "The request body is none of JSON, CSV, Arrow or Parquet."),
    (
        "422",
        "Well-formed data the model cannot take; `missing`/`unexpected` columns; a table "
        "body above max_rows, max_columns or max_decoded_bytes.",
    ),
    ("503", "The store (database) is unreachable."),
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": "#/components/schemas/" + name}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> dict[str, Any]:
    return json_content(ref("Error"), description)


def errors(*codes: str) -> dict[str, Any]:
    """The error answers of `codes`, in the order given."""
    described = dict(_ERRORS)
    return {code: error(described[code]) for code in codes}


def _request(verb: str) -> dict[str, Any]:
    """The JSON body `verb` takes, from the parameter table; optional members may be null,
    which means "not given"."""
    properties: dict[str, Any] = {}
    required = []
    for parameter in taken_by(verb, BODY):
        for name in parameter.names:
            schema = {**parameter.body_schema(), "description": parameter.description}
            if parameter.required:
                required.append(name)
                properties[name] = schema
            else:
                properties[name] = {"anyOf": [schema, {"type": "null"}]}
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _frame() -> dict[str, Any]:
    return {
        "description": "A pandas DataFrame (or Series) in JSON: the text `to_json(orient=...)` "
        "produced, or that JSON value itself.",
        "type": ["string", "object", "array"],
    }


def _time() -> dict[str, Any]:
    return {"type": ["string", "null"], "format": "date-time"}


def _version() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1}


def _warnings() -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string"},
        "description": "Present when the version was trained with other library versions.",
    }


def _strings() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}}


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def schemas() -> dict[str, Any]:
    """Every schema the document refers to, built anew."""
    found: dict[str, Any] = {
        "Frame": _frame(),
        "Orient": {"type": "string", "enum": list(ORIENTS), "default": "columns"},
        "Method": {"type": "string", "enum": list(ModelWrapper.methods), "default": "predict"},
    }
    found.update({name: _request(verb) for verb, name in REQUESTS})
    found["StatusName"] = {"type": "string", "enum": ["RUNNING", "FINISHED", "FAILED"]}
    found["Running"] = _object(
        {"model-key": key_schema(), "status": ref("StatusName"), "version": _version()},
        "model-key",
        "status",
        "version",
    )
    found["Status"] = _object(
        {
            "model-key": key_schema(),
            "status": ref("StatusName"),
            "version": _version(),
            "started": _time(),
            "finished": _time(),
            "error": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
            "warnings": _warnings(),
        },
        *("model-key", "status", "version", "started", "finished", "error", "metadata"),
    )
    entry = _object(
        {
            "model-key": key_schema(),
            "status": ref("StatusName"),
            "version": _version(),
            "finished": _time(),
        },
        *("model-key", "status", "version", "finished"),
    )
    found["KeyList"] = _object(
        {
            "model": {"type": "string"},
            "keys": {"type": "array", "items": entry},
            "next": {
                "anyOf": [key_schema(), {"type": "null"}],
                "description": "The `after` of the next page; null on the last.",
            },
        },
        *("model", "keys", "next"),
    )
    found["Prediction"] = _object(
        {
            "model-key": key_schema(),
            "version": _version(),
            "orient": ref("Orient"),
            "method": {
                "type": "string",
                "description": "The method that answered: the one asked for, else predict, "
                "else the model's only method (transform for a transformer).",
            },
            "y": {**_frame(), "description": "Predictions, in the form and orient x came in."},
            "warnings": _warnings(),
        },
        *("model-key", "version", "orient", "y"),
    )
    found["Deleted"] = _object(
        {"model-key": key_schema(), "deleted": {"type": "integer", "minimum": 1}},
        "model-key",
        "deleted",
    )
    found["Error"] = _object(
        {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "parameter": {"type": "string"},
            "status": ref("StatusName"),
            "missing": _strings(),
            "unexpected": _strings(),
        },
        "title",
        "description",
    )
    found.update(history_schemas())
    found.update(v2_schemas())
    found["ServiceState"] = _object({"status": {"type": "string"}}, "status")
    model = _object(
        {
            "model": {"type": "string"},
            "serializer": {"type": "string"},
            "verbs": _strings(),
            "update": {"type": "boolean"},
            "methods": _strings(),
            "description": {"type": "string"},
        },
        *("model", "serializer", "verbs", "update", "methods", "description"),
    )
    found["Models"] = _object({"models": {"type": "array", "items": model}}, "models")
    return found
