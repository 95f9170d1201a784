"""Thin Falcon resources of a key's history and aliases: `/{model}/{key}/versions[/{n}]`
and `/{model}/{key}/aliases[/{alias}]`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import falcon

from mlserver.http.answers import send, version_body
from mlserver.http.body import read_json
from mlserver.http.parameters import given, merge_body
from mlserver.service import Service

__all__ = ["AliasResource", "AliasesResource", "VersionResource", "VersionsResource"]


class _Resource:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.lifecycle = service.lifecycle
        self.max_bytes = service.settings.max_body_bytes

    def _params(
        self, req: falcon.Request, model: str, allowed: Iterable[str], body: bool = False
    ) -> dict[str, Any]:
        # An unknown model (404) comes before any parameter check, as on `/{model}`.
        self.service.registry.get(model)
        return _params(req, allowed, self.max_bytes if body else 0)


def _params(req: falcon.Request, allowed: Iterable[str], max_bytes: int = 0) -> dict[str, Any]:
    """The query string, and with `max_bytes` the JSON object body, read as on `/{model}`."""
    values: dict[str, Any] = dict(req.params)
    if max_bytes:
        media = (req.content_type or "").split(";")[0].strip().lower()
        merge_body(values, read_json(req, max_bytes, media, lazy=False))
    return given(values, allowed, req.method)


class VersionsResource(_Resource):
    """`/{model}/{key}/versions`: the key's history, newest first, a page at a time."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, model: str, key: str) -> None:
        p = self._params(req, model, ("limit", "before"))
        page = self.lifecycle.versions(model, key=key, limit=p.get("limit"), before=p.get("before"))
        body = {
            "model": model,
            "model-key": key,
            "versions": [version_body(v) for v in page.items],
            "next": page.next,
        }
        send(resp, body)


class VersionResource(_Resource):
    """`/{model}/{key}/versions/{n}`: one version; DELETE removes it, or cancels its job."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, n: str
    ) -> None:
        self._params(req, model, ())
        send(resp, version_body(self.lifecycle.version(model, key=key, number=n)))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, n: str
    ) -> None:
        self._params(req, model, ())
        before, cancelled = self.lifecycle.delete_version(model, key=key, number=n)
        body: dict[str, Any] = {"model-key": key, "version": before.version}
        if cancelled:
            body.update(deleted=0, cancelled=True, status="FAILED")
        else:
            body["deleted"] = 1
        send(resp, body)


class AliasesResource(_Resource):
    """`/{model}/{key}/aliases`: every alias of the key and the version it names."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, model: str, key: str) -> None:
        self._params(req, model, ())
        send(resp, {"model-key": key, "aliases": self.lifecycle.aliases(model, key=key)})


class AliasResource(_Resource):
    """`/{model}/{key}/aliases/{alias}`: PUT points it at a version (moving `served` rolls
    back or forward); DELETE removes it."""

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, alias: str
    ) -> None:
        p = self._params(req, model, ("version",), body=True)
        moved = self.lifecycle.set_alias(model, key=key, alias=alias, version=p.get("version"))
        send(resp, {"model-key": key, "alias": alias, "version": moved.version})

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, alias: str
    ) -> None:
        self._params(req, model, ())
        self.lifecycle.delete_alias(model, key=key, alias=alias)
        send(resp, {"model-key": key, "alias": alias, "deleted": 1})
