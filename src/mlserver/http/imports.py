"""Thin Falcon resources of models trained elsewhere: importing one (`PUT /{model}/import`)
and a version's stored bytes (`GET /{model}/{key}/versions/{n}/artifact`)."""

from __future__ import annotations

import falcon

from mlserver.errors import UnsupportedMediaType
from mlserver.http.answers import send, version_body
from mlserver.http.body import read_body
from mlserver.http.history import _params, _Resource

__all__ = ["OCTET_STREAM", "ArtifactResource", "ImportResource"]

OCTET_STREAM = "application/octet-stream"


class ImportResource(_Resource):
    """`/{model}/import`: an artifact as the body becomes a FINISHED version."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, model: str) -> None:
        self.service.registry.get(model)  # an unknown model is a 404 before anything is read
        p = _params(req, ("serializer", "name", "promote"))
        self.service.imports.check_parameters(
            serializer=p.get("serializer"), key_name=p.get("name"), promote=p.get("promote")
        )
        media = (req.content_type or "").split(";")[0].strip().lower()
        if media not in ("", OCTET_STREAM):
            raise UnsupportedMediaType(
                f"send the artifact's bytes as the body, with Content-Type {OCTET_STREAM}; "
                f"not {media}"
            )
        settings = self.service.settings
        blob = read_body(req, settings.max_import_bytes, "max_import_bytes")
        imported = self.service.imports.import_artifact(
            model,
            blob,
            serializer=p.get("serializer"),
            key_name=p.get("name"),
            promote=p.get("promote"),
            allow_pickle=settings.allow_pickle_import,
            source="http",
        )
        version = imported.version
        resp.set_header("Location", f"/{model}/{version.key}/versions/{version.version}")
        send(resp, version_body(version), falcon.HTTP_201 if imported.created else falcon.HTTP_200)


class ArtifactResource(_Resource):
    """`/{model}/{key}/versions/{n}/artifact`: the bytes as stored, with what they are."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, model: str, key: str, n: str
    ) -> None:
        self._params(req, model, ())
        exported = self.service.imports.export(model, key=key, version=n)
        version = exported.version
        resp.content_type = OCTET_STREAM
        resp.data = exported.data
        resp.set_header("X-Serializer", str(version.serializer))
        resp.set_header("X-Sha256", str(version.sha256))
        resp.set_header("X-Model-Key", version.key)
        resp.set_header("X-Model-Version", str(version.version))
        resp.set_header("Content-Disposition", f'attachment; filename="{exported.filename}"')
