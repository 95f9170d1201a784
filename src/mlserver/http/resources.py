"""Thin Falcon resources: read parameters, call one Service method, write JSON."""

from __future__ import annotations

from typing import Any

import falcon

from mlserver.errors import InvalidPayload
from mlserver.frames.bulk import decode_bulk, split_target
from mlserver.frames.limits import BulkLimits
from mlserver.frames.rows import Rows
from mlserver.http.answers import key_list, running_body, send, status_body
from mlserver.http.body import ARROW_STREAM, BULK_MEDIA, read_body, read_json
from mlserver.http.parameters import (
    KEY_NAMES,
    LISTING,
    PARAMETERS,
    TABLE,
    TABLE_QUERY,
    accepted,
    given,
    merge_body,
    operation_of,
    taken_by,
    verbs_of,
)
from mlserver.service import Service
from mlserver.store.base import Status

__all__ = [
    "HealthResource",
    "ModelResource",
    "ModelsResource",
    "ReadyResource",
]


#: x and y: with a table body they come in it, never also as parameters.
_IN_TABLE = tuple(p.name for p in PARAMETERS if TABLE in p.sources)


class _Params:
    """The request's parameters: query string merged with the JSON object body."""

    def __init__(self, req: falcon.Request, max_bytes: int, body: bool, limits: BulkLimits) -> None:
        self.values: dict[str, Any] = dict(req.params)
        media = (req.content_type or "").split(";")[0].strip().lower()
        if body and media in BULK_MEDIA:
            self._bulk(read_body(req, max_bytes), BULK_MEDIA[media], req.method, limits)
        elif body:
            # A predict's x is decoded once its training schema is known (Service.predict).
            lazy = req.method == "POST"
            merge_body(self.values, read_json(req, max_bytes, media, lazy))
        self.values = given(self.values, accepted(req.method), req.method)

    def _bulk(self, raw: bytes, kind: str, method: str, limits: BulkLimits) -> None:
        """x (and, with `target`, y) from an Arrow, Parquet or CSV body; the rest from the
        query string."""
        if any(name in self.values for name in _IN_TABLE):
            raise InvalidPayload(f"with a {kind} body, x and y come in the body", "x")
        # `target` (TABLE_QUERY) is read here and nowhere else; on other verbs it stays unknown.
        target = next((self.values.pop(p.name, None) for p in taken_by(method, TABLE_QUERY)), None)
        if target is not None and not isinstance(target, str):  # ?target=a&target=b
            raise InvalidPayload(
                "target must be given once, as comma-separated column names", "target"
            )
        orient = self.values.get("orient") or "split"
        table = decode_bulk(raw, kind, orient, limits=limits)
        if target:
            x, self.values["y"] = split_target(table.frame, target)
            table = Rows(x, orient=orient)
        self.values["x"] = table

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def key(self) -> Any:
        given = [self.values[n] for n in KEY_NAMES if n in self.values]
        if len(given) == 2 and given[0] != given[1]:
            raise InvalidPayload("model-key and model_key disagree", "model-key")
        return given[0] if given else None


class ModelResource:
    """`/{model}`: the five verbs."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.max_bytes = service.settings.max_body_bytes
        settings = service.settings
        self.limits = BulkLimits(
            rows=settings.max_rows,
            columns=settings.max_columns,
            decoded_bytes=settings.max_decoded_bytes,
        )

    def _params(self, req: falcon.Request, model: str, body: bool = True) -> _Params:
        # Unknown model (404) or a verb it lacks (405) come before any parameter check.
        self.service.require(model, operation_of(req.method))
        return _Params(req, self.max_bytes, body, self.limits)

    def on_put(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        p = self._params(req, model)
        claim = self.service.fit(
            model,
            x=p.get("x"),
            y=p.get("y"),
            orient=p.get("orient"),
            modkwargs=p.get("modkwargs"),
            algkwargs=p.get("algkwargs"),
            retrain=p.get("retrain"),
            key_name=p.get("name"),
            promote=p.get("promote"),
            validation=p.get("validation"),
            scoring=p.get("scoring"),
        )
        if claim.created:
            send(resp, running_body(claim.version), falcon.HTTP_202)
        else:
            send(resp, status_body(claim.version))

    def on_post(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        p = self._params(req, model)
        result = self.service.predict(
            model,
            key=p.key(),
            x=p.get("x"),
            orient=p.get("orient"),
            method=p.get("method"),
            version=p.get("version"),
            alias=p.get("alias"),
        )
        if wants_arrow(req):
            resp.content_type = ARROW_STREAM
            resp.data = result.arrow()
            resp.set_header("X-Model-Key", result.key)
            resp.set_header("X-Model-Version", str(result.version))
            resp.set_header("X-Model-Method", result.method)
            if result.warnings:
                resp.set_header("X-Model-Warnings", "; ".join(result.warnings))
            return
        body = {
            "model-key": result.key,
            "version": result.version,
            "orient": result.orient,
            "method": result.method,
            "y": result.y,
        }
        if result.warnings:
            body["warnings"] = list(result.warnings)
        send(resp, body)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        p = self._params(req, model)
        version = self.service.update(
            model,
            key=p.key(),
            x=p.get("x"),
            y=p.get("y"),
            orient=p.get("orient"),
            promote=p.get("promote"),
        )
        send(resp, running_body(version), falcon.HTTP_202)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        p = self._params(req, model)
        key = p.key()
        deleted = self.service.delete(model, key=key)
        send(resp, {"model-key": key, "deleted": deleted})

    def on_options(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        """Allow lists what this model takes (Falcon's default would list PATCH for all)."""
        resp.set_header("Allow", ", ".join(verbs_of(self.service.operations(model))))
        resp.status = falcon.HTTP_204

    def on_get(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        p = self._params(req, model, body=False)
        key = p.key()
        if key is None:
            page = self.service.lifecycle.keys(
                model, limit=p.get("limit"), after=p.get("after"), status=p.get("status")
            )
            send(resp, {"model": model, "keys": key_list(page.items), "next": page.next})
        else:
            if listing := [name for name in LISTING if name in p.values]:
                raise InvalidPayload(
                    f"{listing[0]} pages the key listing: it cannot go with a model-key",
                    listing[0],
                )
            version = self.service.status(model, key=key)
            body = status_body(version)
            if version.status is Status.FINISHED and (
                warnings := self.service.version_warnings(model, version)
            ):
                body["warnings"] = warnings
            send(resp, body)


def wants_arrow(req: falcon.Request) -> bool:
    """Accept prefers Arrow over JSON. PERF: content negotiation (~10 us) only when Arrow
    could win: named, or behind a wildcard with JSON's quality lowered."""
    accept = req.get_header("Accept")
    if not accept or accept == "*/*" or ("arrow" not in accept.lower() and "*" not in accept):
        return False
    return req.client_prefers((falcon.MEDIA_JSON, ARROW_STREAM)) == ARROW_STREAM


class HealthResource:
    """`/health`: the process is alive and answering."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"status": "ok"})


class ReadyResource:
    """`/ready`: the store answers, so requests can be served."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.service.ready()
        send(resp, {"status": "ready"})


class ModelsResource:
    """`/models`: what is registered and which verbs each model takes."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"models": [_listed(entry) for entry in self.service.models()]})


def _listed(described: dict[str, Any]) -> dict[str, Any]:
    """A `Service.models()` entry as `/models` lists it: its operations as HTTP verbs, where
    they were."""
    entry: dict[str, Any] = {}
    for name, value in described.items():
        if name == "operations":
            name, value = "verbs", verbs_of(value)
        entry[name] = value
    return entry
