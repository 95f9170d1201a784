"""The OpenAPI paths and schemas of a key's history, aliases and lineage
(`/{model}/{key}/...`)."""

from __future__ import annotations

from typing import Any

from mlserver.artifacts import FORMATS
from mlserver.http.parameters import key_schema
from mlserver.store.base import PROMOTE

__all__ = ["history_paths", "history_schemas"]

_REF = "#/components/schemas/"


def _alias() -> dict[str, Any]:
    return {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _number() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _answer(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_ERRORS = {
    "400": "A parameter is missing or malformed; `parameter` names it.",
    "404": "Unknown model, model-key, version or alias.",
    "409": "The version is not FINISHED (`status`), an alias points at it, or it is `served`.",
    "409-refit": "The version is not FINISHED, or the data it learnt from is not stored "
    "(an imported version has none).",
    "409-import": "The key has a RUNNING version.",
    "400-import": "The artifact does not load with its serializer, its input schema is "
    "unknown, or it fails to predict on rows made from its schema; nothing was stored.",
    "415-import": "joblib or pickle to a server without --allow-pickle-import, or a body "
    "that is not application/octet-stream.",
    "413": "The request body is above the configured limit.",
    "415": "The request body is not JSON.",
    "503": "The store (database) is unreachable, or (refit) training jobs are full: see "
    "Retry-After.",
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code.split("-")[0]: _answer("Error", _ERRORS[code]) for code in codes}


def history_schemas() -> dict[str, Any]:
    """The answers of the history routes, built anew."""
    lineage = _object(
        {
            "data": {"type": ["string", "null"]},
            "rows": {"type": ["integer", "null"]},
            "columns": {"type": ["integer", "null"]},
            "parent": {"type": ["integer", "null"]},
            "kind": {"type": "string", "enum": ["fit", "update", "refit", "import"]},
            "source": {"type": ["integer", "null"]},
        },
        *("data", "rows", "columns", "parent", "kind", "source"),
    )
    version = {
        "allOf": [
            _ref("Status"),
            _object(
                {
                    "serializer": {"type": ["string", "null"]},
                    "size": {"type": ["integer", "null"]},
                    "sha256": {"type": ["string", "null"]},
                    "aliases": {"type": "array", "items": {"type": "string"}},
                    "metrics": {
                        "type": "object",
                        "description": "validation / prequential scores ({score, scoring, "
                        "rows}) and the promotion decision (promoted, reason).",
                    },
                    "lineage": lineage,
                    "attempts": {"type": "integer", "minimum": 1},
                },
                *("serializer", "size", "sha256", "aliases", "metrics", "lineage", "attempts"),
            ),
        ]
    }
    return {
        "Version": version,
        "VersionPage": _object(
            {
                "model": {"type": "string"},
                "model-key": key_schema(),
                "versions": {"type": "array", "items": _ref("Version")},
                "next": {
                    "type": ["integer", "null"],
                    "description": "The `before` of the next page; null on the last.",
                },
            },
            *("model", "model-key", "versions", "next"),
        ),
        "VersionDeleted": _object(
            {
                "model-key": key_schema(),
                "version": _number(),
                "deleted": {"type": "integer", "enum": [0, 1]},
                "cancelled": {"type": "boolean"},
                "status": {"type": "string", "enum": ["FAILED"]},
            },
            *("model-key", "version", "deleted"),
        ),
        "Aliases": _object(
            {
                "model-key": key_schema(),
                "aliases": {"type": "object", "additionalProperties": _number()},
            },
            *("model-key", "aliases"),
        ),
        "AliasRequest": {
            **_object({"version": _number()}, "version"),
            "additionalProperties": False,
        },
        "Alias": _object(
            {"model-key": key_schema(), "alias": _alias(), "version": _number()},
            *("model-key", "alias", "version"),
        ),
        "TrainingData": _object(
            {
                "model-key": key_schema(),
                "version": _number(),
                "x": _split("The rows' features."),
                "y": {"oneOf": [_split("The targets."), {"type": "null"}]},
                "orient": {"type": "string", "enum": ["split"]},
            },
            *("model-key", "version", "x", "y", "orient"),
        ),
        "RefitRequest": {
            **_object(
                {
                    "version": _number(),
                    "promote": {"type": "string", "enum": ["always", "if-better", "never"]},
                }
            ),
            "additionalProperties": False,
        },
        "AliasDeleted": _object(
            {"model-key": key_schema(), "alias": _alias(), "deleted": {"type": "integer"}},
            *("model-key", "alias", "deleted"),
        ),
    }


def _split(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{description} As pandas' `split` orient: columns, index, data.",
        "properties": {
            "columns": {"type": "array"},
            "index": {"type": "array"},
            "data": {"type": "array"},
            "name": {},
        },
    }


def _path_parameters(*names: str) -> list[dict[str, Any]]:
    schemas = {"key": key_schema(), "n": _number(), "alias": _alias()}
    return [{"name": n, "in": "path", "required": True, "schema": schemas[n]} for n in names]


def _operation(
    name: str, operation: str, summary: str, path: tuple[str, ...], **fields: Any
) -> dict[str, Any]:
    parameters = [*_path_parameters(*path), *fields.pop("parameters", [])]
    return {
        "operationId": f"{operation}_{name}",
        "summary": summary,
        "tags": [name],
        "parameters": parameters,
        **fields,
    }


def history_paths(name: str) -> dict[str, Any]:
    """The history and alias routes of model `name`."""
    base = f"/{name}/{{key}}"
    page = [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
        },
        {"name": "before", "in": "query", "required": False, "schema": _number()},
    ]
    return {
        f"{base}/versions": {
            "get": _operation(
                name,
                "versions",
                "The key's versions, newest first, a page at a time",
                ("key",),
                parameters=page,
                responses={
                    "200": _answer("VersionPage", "A page of versions."),
                    **_errors("400", "404", "503"),
                },
            ),
        },
        f"{base}/versions/{{n}}": {
            "get": _operation(
                name,
                "version",
                "One version, with its aliases, metrics and lineage",
                ("key", "n"),
                responses={
                    "200": _answer("Version", "The version."),
                    **_errors("400", "404", "503"),
                },
            ),
            "delete": _operation(
                name,
                "delete_version",
                "Delete one version; a RUNNING one is cancelled (FAILED, never stored)",
                ("key", "n"),
                responses={
                    "200": _answer("VersionDeleted", "Deleted, or cancelled."),
                    **_errors("400", "404", "409", "503"),
                },
            ),
        },
        f"{base}/versions/{{n}}/data": {
            "get": _operation(
                name,
                "training_data",
                "The rows a version was trained or updated on (scope admin)",
                ("key", "n"),
                responses={
                    "200": {
                        "description": "Its x and y; with `Accept: "
                        "application/vnd.apache.arrow.stream`, one Arrow stream of x's columns "
                        "then y's, the target columns named in its schema metadata "
                        "(`mlserver.targets`, a JSON list).",
                        "content": {
                            "application/json": {"schema": _ref("TrainingData")},
                            "application/vnd.apache.arrow.stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    **_errors("400", "404", "503"),
                },
            ),
        },
        f"{base}/versions/{{n}}/artifact": {
            "get": _operation(
                name,
                "artifact",
                "A version's stored bytes, exactly as stored (scope admin)",
                ("key", "n"),
                responses={
                    "200": {
                        "description": "The bytes; `X-Serializer` names their format and "
                        "`X-Sha256` is their sha256.",
                        "headers": {
                            "X-Serializer": {"schema": {"type": "string"}},
                            "X-Sha256": {"schema": {"type": "string"}},
                        },
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **_errors("400", "404", "409", "503"),
                },
            ),
        },
        f"/{name}/import": {
            "put": {
                "operationId": f"import_{name}",
                "summary": "Store a model trained elsewhere as a FINISHED version, once it "
                "loads, has a known input schema and predicts (scope admin)",
                "tags": [name],
                "parameters": [
                    {
                        "name": "serializer",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(FORMATS)},
                        "description": "The artifact's format; guessed from its bytes when absent.",
                    },
                    {
                        "name": "name",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1},
                        "description": "Name the key; default: one from the artifact's sha256.",
                    },
                    {
                        "name": "promote",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(PROMOTE)},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "201": _answer("Version", "Stored as a new version."),
                    "200": _answer("Version", "The key's newest version already is it."),
                    **_errors("400-import", "404", "409-import", "413", "415-import", "503"),
                },
            },
        },
        f"{base}/refit": {
            "post": _operation(
                name,
                "refit",
                "Train a new version from a version's stored data and kwargs (default: the "
                "served one), its updates replayed in order, with the running libraries",
                ("key",),
                requestBody={
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RefitRequest")}},
                },
                responses={
                    "202": _answer("Running", "A refit job was started."),
                    "200": _answer("Status", "Nothing started: the key has a RUNNING version."),
                    **_errors("400", "404", "409-refit", "413", "415", "503"),
                },
            ),
        },
        f"{base}/aliases": {
            "get": _operation(
                name,
                "aliases",
                "The key's aliases and the versions they name",
                ("key",),
                responses={"200": _answer("Aliases", "Alias -> version."), **_errors("404", "503")},
            ),
        },
        f"{base}/aliases/{{alias}}": {
            "put": _operation(
                name,
                "set_alias",
                "Point an alias at a FINISHED version (moving `served` rolls back or forward)",
                ("key", "alias"),
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AliasRequest")}},
                },
                responses={
                    "200": _answer("Alias", "The alias now names this version."),
                    **_errors("400", "404", "409", "413", "415", "503"),
                },
            ),
            "delete": _operation(
                name,
                "delete_alias",
                "Remove an alias (`served` cannot be removed: move it)",
                ("key", "alias"),
                responses={
                    "200": _answer("AliasDeleted", "The alias is gone."),
                    **_errors("400", "404", "409", "503"),
                },
            ),
        },
    }
