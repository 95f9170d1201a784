"""Thin Falcon resources of lineage: a version's training data
(`/{model}/{key}/versions/{n}/data`) and refits (`/{model}/{key}/refit`)."""

from __future__ import annotations

import falcon

from mlserver.http.answers import running_body, send, status_body
from mlserver.http.body import ARROW_STREAM
from mlserver.http.history import _Resource
from mlserver.http.resources import wants_arrow

__all__ = ["RefitResource", "VersionDataResource"]


class VersionDataResource(_Resource):
    """`/{model}/{key}/versions/{n}/data`: the rows a version learnt from, as JSON or Arrow."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, n: str
    ) -> None:
        from mlserver.frames import stored  # PERF: the codec loads when data is read back

        self._params(req, model, ())
        x, y = self.service.lineage.data(model, key=key, version=n)
        if wants_arrow(req):
            resp.content_type = ARROW_STREAM
            resp.data = stored.arrow_answer(x, y)
            resp.set_header("X-Model-Key", key)
            resp.set_header("X-Model-Version", str(int(n)))
            return
        send(resp, {"model-key": key, "version": int(n), **stored.json_answer(x, y)})


class RefitResource(_Resource):
    """`/{model}/{key}/refit`: a new version from a version's stored history, as PUT."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, model: str, key: str) -> None:
        p = self._params(req, model, ("version", "promote"), body=True)
        claim = self.service.lineage.refit(
            model, key=key, version=p.get("version"), promote=p.get("promote")
        )
        if claim.created:
            send(resp, running_body(claim.version), falcon.HTTP_202)
        else:
            send(resp, status_body(claim.version))
