"""Thin Falcon resources of the Open Inference Protocol (V2) REST endpoints, over the same
service as `/{model}`: a V2 model is `{model}:{key}`, a V2 version a version number or an
alias (`served` when none is given). Tensors are read and written by `frames.tensors`;
loading, schema checks and method choice are the service's, as for `POST /{model}`."""

from __future__ import annotations

from typing import Any

import falcon

from mlserver.errors import InvalidPayload, ModelNotFound, UnsupportedMediaType
from mlserver.frames.schema import Schema
from mlserver.http.answers import send
from mlserver.http.body import read_body
from mlserver.loaded import Loaded
from mlserver.service import Service
from mlserver.store.base import Version
from mlserver.version import mlserver_version

__all__ = ["routes"]

#: The protocol extensions this server speaks (Triton's name for binary tensors).
EXTENSIONS = ["binary_tensor_data"]
_OCTET_STREAM = "application/octet-stream"


def routes(service: Service) -> list[tuple[str, object, str | None]]:
    """(template, resource, suffix) of every V2 route, for `create_app`."""
    model = ModelResource(service)
    ready = ModelReadyResource(service)
    infer = InferResource(service)
    server = ServerResource()
    return [
        ("/v2", server, None),
        ("/v2/", server, None),  # as the protocol's own OpenAPI document writes it
        ("/v2/health/live", LiveResource(), None),
        ("/v2/health/ready", ReadyResource(service), None),
        ("/v2/models/{name}", model, None),
        ("/v2/models/{name}/versions/{version}", model, "version"),
        ("/v2/models/{name}/ready", ready, None),
        ("/v2/models/{name}/versions/{version}/ready", ready, "version"),
        ("/v2/models/{name}/infer", infer, None),
        ("/v2/models/{name}/versions/{version}/infer", infer, "version"),
    ]


def split_name(service: Service, name: str) -> tuple[str, str]:
    """`{model}:{key}` as (model, key); ModelNotFound unless `model` is registered."""
    model, colon, key = name.partition(":")
    if not colon or not key:
        raise ModelNotFound(
            f"unknown V2 model {name!r}: V2 names a model-key as {{model}}:{{key}}, e.g. "
            "iris:8a69db5610617029afeb0c6aa05741ed"
        )
    service.registry.get(model)
    return model, key


def _selector(version: str | None) -> dict[str, Any]:
    """A V2 version as the service's `version` (a number) or `alias` (a name)."""
    if version is None or version == "":
        return {}
    return {"version": version} if version.isdigit() else {"alias": version}


class ServerResource:
    """`/v2`: server metadata."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"name": "mlserver", "version": mlserver_version(), "extensions": EXTENSIONS})


class LiveResource:
    """`/v2/health/live`: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"live": True})


class ReadyResource:
    """`/v2/health/ready`: the store answers (503 otherwise), so models can be served."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.service.ready()
        send(resp, {"ready": True})


class _ModelRoute:
    def __init__(self, service: Service) -> None:
        self.service = service

    def _found(
        self, req: falcon.Request, name: str, version: str | None
    ) -> tuple[str, Version, Loaded]:
        model, key = split_name(self.service, name)
        req.context.model = model  # the metrics' model label
        found, loaded = self.service.loaded(model, key=key, **_selector(version))
        return model, found, loaded


class ModelResource(_ModelRoute):
    """`/v2/models/{name}[/versions/{version}]`: what the version takes and gives."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.on_get_version(req, resp, name, None)

    def on_get_version(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None
    ) -> None:
        model, found, loaded = self._found(req, name, version)
        numbers = self.service.lifecycle.finished_numbers(model, found.key)
        body = {
            "name": name,
            "versions": [str(n) for n in numbers],
            "platform": f"mlserver-{found.serializer}",
            "inputs": _inputs(loaded.schema),
            "outputs": _outputs(loaded),
            "parameters": {
                "version": str(found.version),
                "aliases": self.service.lifecycle.aliases(model, key=found.key),
            },
        }
        send(resp, body)


class ModelReadyResource(_ModelRoute):
    """`/v2/models/{name}[/versions/{version}]/ready`: 200 when it can predict now."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.on_get_version(req, resp, name, None)

    def on_get_version(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None
    ) -> None:
        _, found, _ = self._found(req, name, version)
        send(resp, {"name": name, "version": str(found.version), "ready": True})


class InferResource:
    """`POST /v2/models/{name}[/versions/{version}]/infer`: tensors in, tensors out."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.max_bytes = service.settings.max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.on_post_version(req, resp, name, None)

    def on_post_version(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None
    ) -> None:
        from mlserver.frames import tensors  # PERF: loaded with the first V2 request

        model, key = split_name(self.service, name)
        req.context.model = model
        media = (req.content_type or "").split(";")[0].strip().lower()
        if media not in ("", falcon.MEDIA_JSON, _OCTET_STREAM):
            raise UnsupportedMediaType(
                f"an inference request is application/json (or {_OCTET_STREAM} with binary "
                f"tensors); not {media}"
            )
        request = tensors.parse_request(
            read_body(req, self.max_bytes), req.get_header(tensors.HEADER_LENGTH)
        )
        methods = self.service.registry.get(model).methods
        unknown = [o for o in request.outputs or () if o not in methods]
        if unknown:
            raise InvalidPayload(
                f"unknown outputs {', '.join(map(repr, unknown))}: outputs are named after "
                f"the methods ({', '.join(methods)})",
                "outputs",
            )
        predictions = self.service.predict_rows(
            model, key=key, rows=request.rows, methods=request.outputs, **_selector(version)
        )
        outputs = [tensors.output_tensor(p.method, p.rows) for p in predictions]
        first = predictions[0]
        head: dict[str, Any] = {"model_name": name, "model_version": str(first.version)}
        if request.id is not None:
            head["id"] = request.id
        if first.warnings:
            head["parameters"] = {"warnings": list(first.warnings)}
        binary = {o.name for o in outputs} if request.binary_all else set(request.binary)
        body, header_length = tensors.encode_response(head, outputs, binary)
        resp.status = falcon.HTTP_200
        resp.data = body
        if header_length is None:
            resp.content_type = falcon.MEDIA_JSON
        else:
            resp.content_type = _OCTET_STREAM
            resp.set_header(tensors.HEADER_LENGTH, str(header_length))


def _inputs(schema: Schema) -> list[dict[str, Any]]:
    """One [-1, 1] input per training column, then (where every column has one datatype
    kind) the tensor form: one [-1, columns] input of every column in order."""
    from mlserver.frames.tensors import column_datatype

    inputs = [
        {"name": str(c), "datatype": column_datatype(t), "shape": [-1, 1]}
        for c, t in zip(schema.columns, schema.dtypes, strict=True)
    ]
    kinds = {"BYTES" if i["datatype"] == "BYTES" else "FP64" for i in inputs}
    if len(kinds) == 1 and len(inputs) > 1:
        taken = {i["name"] for i in inputs}
        name = next(n for n in ("x", "input", "inputs") if n not in taken)
        inputs.append(
            {
                "name": name,
                "datatype": kinds.pop(),
                "shape": [-1, len(inputs)],
                "parameters": {"content_type": "np", "columns": [i["name"] for i in inputs]},
            }
        )
    return inputs


def _outputs(loaded: Loaded) -> list[dict[str, Any]]:
    """One output per method the version offers, named after it."""
    from mlserver.frames import tensors

    classes = getattr(loaded.model, "classes_", None)
    found = []
    for method in loaded.offered:
        entry: dict[str, Any] = {"name": method, "datatype": "FP64", "shape": [-1]}
        if method == "predict":
            if classes is not None:
                entry["datatype"] = tensors.datatype_of(classes)
            if len(loaded.targets) > 1:
                entry["shape"] = [-1, len(loaded.targets)]
        elif method in ("predict_proba", "decision_function"):
            width = len(classes) if classes is not None else -1
            if method == "predict_proba" or width != 2:
                entry["shape"] = [-1, width]
        else:
            entry["shape"] = [-1, -1]
        found.append(entry)
    return found
