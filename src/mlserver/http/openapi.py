"""The OpenAPI 3.1 document of one app, generated from its registry (and its auth)."""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from mlserver.frames import ORIENTS
from mlserver.http.auth import required_scopes
from mlserver.http.parameters import verbs_of
from mlserver.service import Service

__all__ = ["OpenAPIDocument", "openapi"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_ERRORS = {
    "400": _error("A parameter is missing or malformed; `parameter` names it."),
    "404": _error("Unknown model, or a model-key with no versions."),
    "409": _error("The key is not ready for this; `status` is the blocking status."),
    "413": _error("The request body is above the configured limit."),
    "415": _error("The request body is not JSON."),
    "422": _error("Well-formed data the model cannot take; `missing`/`unexpected` columns."),
    "503": _error("The store (database) is unreachable."),
}
_AUTH_ERRORS = {
    "401": {
        **_error("No valid bearer token (see the WWW-Authenticate header)."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "403": _error("The token lacks the scope this operation needs."),
}
_SCHEME = "bearer"

_KEY_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "The key a PUT returned" + (" (alias)." if "_" in name else "."),
    }
    for name in ("model-key", "model_key")
]

_FRAME = {
    "description": "A pandas DataFrame (or Series) in JSON: the text `to_json(orient=...)` "
    "produced, or that JSON value itself.",
    "type": ["string", "object", "array"],
}

_KEY = {"type": "string", "description": "The key a PUT returned."}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_WARNINGS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Present when the version was trained with other library versions.",
}
_KWARGS = {"type": ["object", "string"], "description": "Keyword arguments (or their JSON text)."}


def _request(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A request body; optional parameters may be null, which means "not given"."""
    return {
        "type": "object",
        "properties": {
            name: schema if name in required else {"anyOf": [schema, {"type": "null"}]}
            for name, schema in properties.items()
        },
        "required": required,
        "additionalProperties": False,
    }


_SCHEMAS: dict[str, Any] = {
    "Frame": _FRAME,
    "Orient": {"type": "string", "enum": list(ORIENTS), "default": "columns"},
    "FitRequest": _request(
        {
            "x": _ref("Frame"),
            "y": _ref("Frame"),
            "orient": _ref("Orient"),
            "modkwargs": _KWARGS,
            "algkwargs": _KWARGS,
            "retrain": {
                "oneOf": [
                    {"type": "boolean"},
                    {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"},
                ]
            },
            "name": {"type": "string", "minLength": 1},
        },
        ["x"],
    ),
    "PredictRequest": _request(
        {
            "x": _ref("Frame"),
            "orient": _ref("Orient"),
            "method": {
                "type": "string",
                "enum": ["predict", "predict_proba", "decision_function", "transform"],
                "default": "predict",
            },
            "model-key": _KEY,
            "model_key": _KEY,
        },
        ["x"],
    ),
    "UpdateRequest": _request(
        {
            "x": _ref("Frame"),
            "y": _ref("Frame"),
            "orient": _ref("Orient"),
            "model-key": _KEY,
            "model_key": _KEY,
        },
        ["x"],
    ),
    "DeleteRequest": _request({"model-key": _KEY, "model_key": _KEY}, []),
    "StatusName": {"type": "string", "enum": ["RUNNING", "FINISHED", "FAILED"]},
    "Running": {
        "type": "object",
        "properties": {
            "model-key": _KEY,
            "status": _ref("StatusName"),
            "version": {"type": "integer", "minimum": 1},
        },
        "required": ["model-key", "status", "version"],
    },
    "Status": {
        "type": "object",
        "properties": {
            "model-key": _KEY,
            "status": _ref("StatusName"),
            "version": {"type": "integer", "minimum": 1},
            "started": _TIME,
            "finished": _TIME,
            "error": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
            "warnings": _WARNINGS,
        },
        "required": ["model-key", "status", "version", "started", "finished", "error", "metadata"],
    },
    "KeyList": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "model-key": _KEY,
                        "status": _ref("StatusName"),
                        "version": {"type": "integer", "minimum": 1},
                        "finished": _TIME,
                    },
                    "required": ["model-key", "status", "version", "finished"],
                },
            },
        },
        "required": ["model", "keys"],
    },
    "Prediction": {
        "type": "object",
        "properties": {
            "model-key": _KEY,
            "version": {"type": "integer", "minimum": 1},
            "orient": _ref("Orient"),
            "method": {
                "type": "string",
                "description": "The method that answered: the one asked for, else predict, "
                "else the model's only method (transform for a transformer).",
            },
            "y": {**_FRAME, "description": "Predictions, in the form and orient x came in."},
            "warnings": _WARNINGS,
        },
        "required": ["model-key", "version", "orient", "y"],
    },
    "Deleted": {
        "type": "object",
        "properties": {"model-key": _KEY, "deleted": {"type": "integer", "minimum": 1}},
        "required": ["model-key", "deleted"],
    },
    "Error": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "parameter": {"type": "string"},
            "status": _ref("StatusName"),
            "missing": {"type": "array", "items": {"type": "string"}},
            "unexpected": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "description"],
    },
    "ServiceState": {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    },
    "Models": {
        "type": "object",
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "serializer": {"type": "string"},
                        "verbs": {"type": "array", "items": {"type": "string"}},
                        "update": {"type": "boolean"},
                        "methods": {"type": "array", "items": {"type": "string"}},
                        "description": {"type": "string"},
                    },
                    "required": [
                        "model",
                        "serializer",
                        "verbs",
                        "update",
                        "methods",
                        "description",
                    ],
                },
            }
        },
        "required": ["models"],
    },
}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    return {**ok, **{code: _ERRORS[code] for code in codes}}


def _model_path(name: str, description: str, verbs: list[str]) -> dict[str, Any]:
    tag = [name]
    path: dict[str, Any] = {
        "get": {
            "operationId": f"status_{name}",
            "summary": "Status of a key (newest version), or the list of keys without one",
            "tags": tag,
            "parameters": _KEY_PARAMETERS,
            "responses": _responses(
                {
                    "200": _json(
                        {"oneOf": [_ref("Status"), _ref("KeyList")]},
                        "The key's newest version, or every key of the model.",
                    )
                },
                "400",
                "404",
                "503",
            ),
        },
        "put": {
            "operationId": f"fit_{name}",
            "summary": "Fit: start training unless this key already has a version",
            "description": description,
            "tags": tag,
            "requestBody": _body("FitRequest"),
            "responses": _responses(
                {
                    "202": _json(_ref("Running"), "A training job was started."),
                    "200": _json(_ref("Status"), "Nothing started: FINISHED or RUNNING."),
                },
                "400",
                "404",
                "413",
                "415",
                "503",
            ),
        },
        "post": {
            "operationId": f"predict_{name}",
            "summary": "Predict with the newest FINISHED version of a key",
            "tags": tag,
            "requestBody": _body("PredictRequest"),
            "responses": _responses(
                {"200": _json(_ref("Prediction"), "Predictions with x's index.")},
                "400",
                "404",
                "409",
                "413",
                "415",
                "422",
                "503",
            ),
        },
        "delete": {
            "operationId": f"delete_{name}",
            "summary": "Delete every version of a key",
            "tags": tag,
            "parameters": _KEY_PARAMETERS,
            "requestBody": _body("DeleteRequest", required=False),
            "responses": _responses(
                {"200": _json(_ref("Deleted"), "How many versions were deleted.")},
                "400",
                "404",
                "413",
                "415",
                "503",
            ),
        },
    }
    if "PATCH" in verbs:
        path["patch"] = {
            "operationId": f"update_{name}",
            "summary": "Update the newest FINISHED version with new data (a new version)",
            "tags": tag,
            "requestBody": _body("UpdateRequest"),
            "responses": _responses(
                {"202": _json(_ref("Running"), "An update job was started.")},
                "400",
                "404",
                "409",
                "413",
                "415",
                "422",
                "503",
            ),
        }
    return path


def _service_path(operation: str, summary: str, schema: str, *codes: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["service"],
            "responses": _responses({"200": _json(_ref(schema), summary)}, *codes),
        }
    }


def openapi(service: Service, *, secured: bool = False) -> dict[str, Any]:
    """The document describing every route this app answers, PATCH only where supported;
    with `secured`, the bearer scheme, each operation's scopes and its 401/403 answers."""
    paths: dict[str, Any] = {
        "/health": _service_path("health", "The process is alive", "ServiceState"),
        "/ready": _service_path("ready", "The store answers", "ServiceState", "503"),
        "/models": _service_path("models", "Registered models and their verbs", "Models"),
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["service"],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this app",
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "Metrics in the Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    for described in service.models():
        name = described["model"]
        paths[f"/{name}"] = _model_path(
            name, described["description"], verbs_of(described["operations"])
        )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "mlserver",
            "version": service.version,
            "description": "Train and serve scikit-learn-style models: PUT fits, POST "
            "predicts, PATCH updates, DELETE removes, GET reports status.",
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
    if secured:
        _secure(document)
    return document


def _secure(document: dict[str, Any]) -> None:
    """Add the bearer scheme and, per operation, the scopes (OpenAPI 3.1 role names) it
    takes and its 401/403 answers; /health and /ready stay open."""
    document["components"] = {
        **document["components"],
        "securitySchemes": {
            _SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "A token the server knows by its sha256. Scopes: predict "
                "(POST; GET with a model-key), train (PUT, PATCH; GET with a model-key), "
                "admin (DELETE; GET without a model-key; /models, /openapi.json, /metrics).",
            }
        },
    }
    document["security"] = [{_SCHEME: []}]
    service_paths = {"/health", "/ready", "/models", "/openapi.json", "/metrics"}
    for path, operations in document["paths"].items():
        route = path if path in service_paths else "/{model}"
        for method, operation in operations.items():
            verb = method.upper()
            needed = required_scopes(verb, route, has_key=True)
            if verb == "GET" and route == "/{model}":  # with or without a model-key
                needed = needed | (required_scopes(verb, route, has_key=False) or frozenset())
            if needed is None:
                operation["security"] = []
                continue
            operation["security"] = [{_SCHEME: [scope]} for scope in sorted(needed)] or [
                {_SCHEME: []}
            ]
            operation["responses"] = {
                **operation["responses"],
                "401": _AUTH_ERRORS["401"],
                **({"403": _AUTH_ERRORS["403"]} if needed else {}),
            }


class OpenAPIDocument:
    """`/openapi.json`: the OpenAPI 3.1 document of this app."""

    def __init__(self, service: Service, *, secured: bool = False) -> None:
        self.service = service
        self.secured = secured

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(openapi(self.service, secured=self.secured))
