"""Store.versions: a key's whole history through the public store API, on every backend."""

from __future__ import annotations

import hashlib

from mlserver.store import SQLStore, Status
from mlserver.store.base import Artifact, Page


def _claim(store: SQLStore, key: str) -> int:
    claim = store.claim("m", key, worker="w", lease_seconds=30.0, retrain=True)
    assert claim.created
    return claim.version.id


def test_versions_lists_every_version_newest_first(store):
    """versions() holds a key's finished, failed and running versions, newest first, without
    the versions of other keys, and nothing for a key that has none."""
    blob = b"model-bytes"
    digest = hashlib.sha256(blob).hexdigest()
    first = _claim(store, "k")
    assert store.finish(first, Artifact(blob, digest, "joblib", {"a": 1}))
    assert store.fail(_claim(store, "k"), "boom")
    _claim(store, "k")
    _claim(store, "other")
    listed = store.versions("m", "k").items
    assert [(v.version, v.status) for v in listed] == [
        (3, Status.RUNNING),
        (2, Status.FAILED),
        (1, Status.FINISHED),
    ]
    assert listed[0] == store.newest("m", "k")
    assert (listed[1].error, listed[2].sha256, listed[2].metadata) == ("boom", digest, {"a": 1})
    assert store.versions("m", "missing") == Page([], None)
    store.delete("m", "k")
    assert store.versions("m", "k") == Page([], None)
