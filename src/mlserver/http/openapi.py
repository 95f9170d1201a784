"""The OpenAPI 3.1 document of one app, generated from its registry (and its auth)."""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from mlserver.http.auth import required_scopes
from mlserver.http.body import ARROW_STREAM, BULK_MEDIA
from mlserver.http.openapi_history import history_paths
from mlserver.http.openapi_schemas import REQUESTS, error, errors, json_content, ref, schemas
from mlserver.http.openapi_v2 import v2_paths
from mlserver.http.parameters import QUERY, TABLE, TABLE_QUERY, operation_of, taken_by, verbs_of
from mlserver.service import Service

__all__ = ["OpenAPIDocument", "openapi"]

_SCHEME = "bearer"
_TABLE = (
    "x (and, on PUT and PATCH, y: the `target` columns) as a table; the other parameters "
    "in the query string."
)


def _binary(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "description": description}


def _auth_errors() -> dict[str, Any]:
    return {
        "401": {
            **error("No valid bearer token (see the WWW-Authenticate header)."),
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        "403": error("The token lacks the scope this operation needs."),
    }


def _query(verb: str) -> list[dict[str, Any]]:
    """The query parameters `verb` takes, from the parameter table (x and y, JSON text there,
    are documented in the body only)."""
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": parameter.query_schema(),
            "description": parameter.description,
        }
        for parameter in taken_by(verb)
        if parameter.query_schema is not None and parameter.sources & {QUERY, TABLE_QUERY}
        for name in parameter.names
    ]


def _body(verb: str, schema: str, required: bool = True) -> dict[str, Any]:
    """The JSON body of `verb` and, where x may come as a table, each table media type."""
    content: dict[str, Any] = {"application/json": {"schema": ref(schema)}}
    if taken_by(verb, TABLE):
        content.update({media: {"schema": _binary(_TABLE)} for media in BULK_MEDIA})
    return {"required": required, "content": content}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    return {**ok, **errors(*codes)}


def _prediction() -> dict[str, Any]:
    """POST's answer: JSON, or an Arrow stream when Accept prefers it."""
    answer = json_content(ref("Prediction"), "Predictions with x's index.")
    answer["content"][ARROW_STREAM] = {
        "schema": _binary(
            f"With `Accept: {ARROW_STREAM}`: the predictions as an Arrow stream, x's index "
            "kept; the headers X-Model-Key, X-Model-Version, X-Model-Method (and "
            "X-Model-Warnings) carry the rest of the JSON answer."
        )
    }
    return answer


def _operation(name: str, verb: str, summary: str, **fields: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{operation_of(verb)}_{name}",
        "summary": summary,
        "tags": [name],
    }
    if parameters := _query(verb):
        operation["parameters"] = parameters
    operation.update(fields)
    return operation


def _model_path(name: str, description: str, verbs: list[str]) -> dict[str, Any]:
    requests = dict(REQUESTS)
    path: dict[str, Any] = {
        "get": _operation(
            name,
            "GET",
            "Status of a key (newest version), or the list of keys without one",
            responses=_responses(
                {
                    "200": json_content(
                        {"oneOf": [ref("Status"), ref("KeyList")]},
                        "The key's newest version, or every key of the model.",
                    )
                },
                *("400", "404", "503"),
            ),
        ),
        "put": _operation(
            name,
            "PUT",
            "Fit: start training unless this key already has a version",
            description=description,
            requestBody=_body("PUT", requests["PUT"]),
            responses=_responses(
                {
                    "202": json_content(ref("Running"), "A training job was started."),
                    "200": json_content(ref("Status"), "Nothing started: FINISHED or RUNNING."),
                },
                *("400", "404", "413", "415", "422", "503"),
            ),
        ),
        "post": _operation(
            name,
            "POST",
            "Predict with the served version of a key (or a `version` or `alias`)",
            requestBody=_body("POST", requests["POST"]),
            responses=_responses(
                {"200": _prediction()}, *("400", "404", "409", "413", "415", "422", "503")
            ),
        ),
        "delete": _operation(
            name,
            "DELETE",
            "Delete every version of a key",
            requestBody=_body("DELETE", requests["DELETE"], required=False),
            responses=_responses(
                {"200": json_content(ref("Deleted"), "How many versions were deleted.")},
                *("400", "404", "413", "415", "503"),
            ),
        ),
    }
    if "PATCH" in verbs:
        path["patch"] = _operation(
            name,
            "PATCH",
            "Update the served version with new data (a new version)",
            requestBody=_body("PATCH", requests["PATCH"]),
            responses=_responses(
                {"202": json_content(ref("Running"), "An update job was started.")},
                *("400", "404", "409", "413", "415", "422", "503"),
            ),
        )
    return path


def _service_path(operation: str, summary: str, schema: str, *codes: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["service"],
            "responses": _responses({"200": json_content(ref(schema), summary)}, *codes),
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
                "responses": {"200": json_content({"type": "object"}, "The OpenAPI document.")},
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
        paths.update(history_paths(name))
    paths.update(v2_paths())
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "mlserver",
            "version": service.version,
            "description": "Train and serve scikit-learn-style models: PUT fits, POST "
            "predicts, PATCH updates, DELETE removes, GET reports status.",
        },
        "paths": paths,
        "components": {"schemas": schemas()},
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
                "(POST; GET with a model-key; reading versions and aliases), train (PUT, PATCH; "
                "GET with a model-key; moving aliases, deleting or cancelling a version), "
                "admin (DELETE; GET without a model-key; /models, /openapi.json, /metrics).",
            }
        },
    }
    document["security"] = [{_SCHEME: []}]
    service_paths = {"/health", "/ready", "/models", "/openapi.json", "/metrics"}
    for path, operations in document["paths"].items():
        route = _route(path, service_paths)
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
            auth_errors = _auth_errors()
            operation["responses"] = {
                **operation["responses"],
                "401": auth_errors["401"],
                **({"403": auth_errors["403"]} if needed else {}),
            }


def _route(path: str, service_paths: set[str]) -> str:
    """The URI template a documented path is routed by: `/linreg/{key}/aliases` is
    `/{model}/{key}/aliases`."""
    if path in service_paths or path == "/v2" or path.startswith("/v2/"):
        return path
    _, slash, rest = path[1:].partition("/")
    return "/{model}" + slash + rest


class OpenAPIDocument:
    """`/openapi.json`: the OpenAPI 3.1 document of this app."""

    def __init__(self, service: Service, *, secured: bool = False) -> None:
        self.service = service
        self.secured = secured

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(openapi(self.service, secured=self.secured))
