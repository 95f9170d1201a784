"""The JSON bodies of answers about versions, in one place: the status of a version, the
fuller `V` of the version history, and the key listing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import falcon

from mlserver.frames.encode import dumps
from mlserver.store.base import Version

__all__ = ["key_list", "running_body", "send", "status_body", "version_body"]


def send(resp: falcon.Response, body: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(body)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def status_body(version: Version) -> dict[str, Any]:
    """What `GET /{model}?model-key=` answers: the version's state and metadata."""
    return {
        "model-key": version.key,
        "status": version.status.value,
        "version": version.version,
        "started": _iso(version.started),
        "finished": _iso(version.finished),
        "error": version.error,
        "metadata": dict(version.metadata),
    }


def running_body(version: Version) -> dict[str, Any]:
    return {"model-key": version.key, "status": version.status.value, "version": version.version}


def lineage(version: Version) -> dict[str, Any]:
    """Where a version comes from: as recorded with its inputs, or for a version stored
    before lineage was, as its metadata says (fitted, or updated from its parent)."""
    if version.lineage:
        return dict(version.lineage)
    metadata = version.metadata
    parent = metadata.get("base_version")
    return {
        "data": None,
        "rows": metadata.get("rows"),
        "columns": metadata.get("n_features"),
        "parent": parent,
        "kind": "update" if parent is not None else "fit",
        "source": None,
    }


def version_body(version: Version) -> dict[str, Any]:
    """`V`: the status body with what the version history adds."""
    return {
        **status_body(version),
        "serializer": version.serializer,
        "size": version.size,
        "sha256": version.sha256,
        "aliases": list(version.aliases),
        "metrics": dict(version.metrics),
        "lineage": lineage(version),
        "attempts": version.attempts,
    }


def key_list(versions: Iterable[Version]) -> list[dict[str, Any]]:
    return [
        {
            "model-key": v.key,
            "status": v.status.value,
            "version": v.version,
            "finished": _iso(v.finished),
        }
        for v in versions
    ]
