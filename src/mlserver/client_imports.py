"""Models trained elsewhere as `ModelClient` methods (both need an admin token):

stored = client.import_model("model.onnx")      # a FINISHED version of a new key
artifact = client.export(stored["model-key"])   # the served version's bytes, checked
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlserver.artifacts import guess_format
from mlserver.client_errors import ClientError, server_error

__all__ = ["ExportedArtifact", "ImportCalls"]


@dataclass(frozen=True)
class ExportedArtifact:
    """A version's stored bytes, as `export` gives them."""

    key: str
    version: int
    serializer: str
    sha256: str
    data: bytes


class ImportCalls:
    """`PUT /{model}/import` and `GET /{model}/{key}/versions/{n}/artifact`; `ModelClient`
    provides the plumbing."""

    endpoint: str

    def _send(self, method: str, url: str, params: Any, body: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def aliases(self, key: str) -> dict[str, int]:
        raise NotImplementedError  # pragma: no cover - HistoryCalls' own

    def import_model(
        self,
        artifact: str | os.PathLike[str] | bytes,
        *,
        serializer: str | None = None,
        name: str | None = None,
        promote: str | None = None,
    ) -> dict[str, Any]:
        """Store a fitted model from a file (a path) or its bytes as a FINISHED version:
        of the key `name` gives, else of one from the artifact's sha256. `serializer`
        (onnx, skops, joblib, pickle) is guessed from the file name, else the server
        guesses it from the bytes. Returns the stored version (`V`); the same artifact
        imported again answers the version it already is.

        Raises:
            BadRequest: the server could not load it, find its schema, or predict with it.
            UnsupportedMedia: joblib or pickle to a server without --allow-pickle-import.
            Conflict: the key has a RUNNING version.
        """
        if isinstance(artifact, (bytes, bytearray, memoryview)):
            data, filename = bytes(artifact), None
        else:
            path = Path(artifact)
            data, filename = path.read_bytes(), path.name
        serializer = serializer or (guess_format(b"", filename) if filename else None)
        params = {
            key: value
            for key, value in (("serializer", serializer), ("name", name), ("promote", promote))
            if value is not None
        }
        answer = self._send("PUT", f"{self.endpoint}/import", params, data)
        if answer.status_code >= 400:
            raise server_error(answer)
        return orjson.loads(answer.content)

    def export(self, key: str, version: int | None = None) -> ExportedArtifact:
        """The stored bytes of version `version` of `key` (default: the served one),
        checked against the sha256 the server sends with them.

        Raises:
            NotFound: no such version. Conflict: it is not FINISHED.
        """
        if version is None:
            version = self.aliases(key)["served"]
        url = f"{self.endpoint}/{key}/versions/{int(version)}/artifact"
        answer = self._send("GET", url, None, None)
        if answer.status_code >= 400:
            raise server_error(answer)
        headers: Mapping[str, str] = answer.headers
        sha = hashlib.sha256(answer.content).hexdigest()
        if sha != headers.get("X-Sha256"):
            raise ClientError(f"GET {url}: the bytes received do not match their X-Sha256")
        return ExportedArtifact(
            key=key,
            version=int(version),
            serializer=headers.get("X-Serializer", ""),
            sha256=sha,
            data=answer.content,
        )
