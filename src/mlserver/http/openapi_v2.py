"""The OpenAPI paths and schemas of the Open Inference Protocol (V2) routes (`/v2/...`)."""

from __future__ import annotations

from typing import Any

__all__ = ["v2_paths", "v2_schemas"]

_REF = "#/components/schemas/"
_ERRORS = {
    "400": "The request is malformed (JSON, a tensor's datatype, shape or data, an unknown "
    "output); `error` says what.",
    "404": "Unknown model, model-key, version or alias (a V2 name is `{model}:{key}`).",
    "409": "The version is not FINISHED, or this server will not load it.",
    "413": "The request body is above the configured limit.",
    "415": "The body is neither JSON nor binary tensors.",
    "422": "The tensors do not fit the model: other columns than in training, or values "
    "the model cannot take.",
    "503": "The store (database) is unreachable.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _answer(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _answer("V2Error", _ERRORS[code]) for code in codes}


def _parameters(versioned: bool) -> list[dict[str, Any]]:
    found = [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "`{model}:{key}`: a registered model and one of its model-keys.",
            "schema": {"type": "string", "minLength": 1},
        }
    ]
    if versioned:
        found.append(
            {
                "name": "version",
                "in": "path",
                "required": True,
                "description": "A version number, or an alias (`served` when none is given).",
                "schema": {"type": "string", "minLength": 1},
            }
        )
    return found


def _get(operation: str, summary: str, schema: str, *codes: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["v2"],
            "responses": {"200": _answer(schema, summary), **_errors(*codes)},
        }
    }


def v2_paths() -> dict[str, Any]:
    """Every V2 route (`/v2/` answers as `/v2`)."""
    paths = {
        "/v2": _get("v2_server", "Server metadata", "V2ServerMetadata"),
        "/v2/health/live": _get("v2_live", "The server is live", "V2State"),
        "/v2/health/ready": _get("v2_ready", "The server is ready", "V2State", "503"),
    }
    for versioned in (False, True):
        base = "/v2/models/{name}" + ("/versions/{version}" if versioned else "")
        suffix = "_version" if versioned else ""
        parameters = _parameters(versioned)
        metadata = _get(
            f"v2_model{suffix}",
            "What the version takes (one input per training column, or one tensor of them "
            "all) and gives (one output per method)",
            "V2ModelMetadata",
            "400",
            "404",
            "409",
            "503",
        )
        metadata["get"]["parameters"] = parameters
        ready = _get(
            f"v2_model_ready{suffix}",
            "The version can predict now",
            "V2State",
            "400",
            "404",
            "409",
            "503",
        )
        ready["get"]["parameters"] = parameters
        paths[base] = metadata
        paths[f"{base}/ready"] = ready
        paths[f"{base}/infer"] = {
            "post": {
                "operationId": f"v2_infer{suffix}",
                "summary": "Inference: tensors in, one output per method asked for",
                "description": "JSON tensors, or Triton's binary tensor extension: the "
                "`Inference-Header-Content-Length` header gives the length of the JSON part, "
                "binary tensor data follows (inputs with `parameters.binary_data_size`; "
                "outputs asked for with `parameters.binary_data`).",
                "tags": ["v2"],
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("V2InferenceRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "The outputs: JSON, or with binary outputs the JSON "
                        "part (as long as the answer's Inference-Header-Content-Length says) "
                        "then their data.",
                        "content": {
                            "application/json": {"schema": _ref("V2InferenceResponse")},
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    **_errors("400", "404", "409", "413", "415", "422", "503"),
                },
            }
        }
    return paths


def _datatypes() -> list[str]:
    from mlserver.frames.tensors import DATATYPES  # PERF: only when the document is built

    return list(DATATYPES)


def _tensor(required: tuple[str, ...], smallest: int = 0) -> dict[str, Any]:
    """A tensor; metadata shapes say -1 for a size that varies (`smallest`)."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": list(_datatypes())},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": smallest}},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
        "required": list(required),
    }


def v2_schemas() -> dict[str, Any]:
    """The components the V2 paths refer to."""
    return {
        "V2ServerMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["name", "version", "extensions"],
        },
        "V2State": {"type": "object"},
        "V2ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _tensor(("name", "datatype", "shape"), -1)},
                "outputs": {"type": "array", "items": _tensor(("name", "datatype", "shape"), -1)},
                "parameters": {"type": "object"},
            },
            "required": ["name", "platform", "versions", "inputs", "outputs"],
        },
        "V2InferenceRequest": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": _tensor(("name", "datatype", "shape", "data")),
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "parameters": {"type": "object"},
                        },
                        "required": ["name"],
                    },
                },
            },
            "required": ["inputs"],
        },
        "V2InferenceResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": _tensor(("name", "datatype", "shape"))},
            },
            "required": ["model_name", "outputs"],
        },
        "V2Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        },
    }
