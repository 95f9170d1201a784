"""What a job records before its result: its lineage and, where the data can be stored,
the inputs it needs to run again (the datasets it learns from, once per distinct content).

Recording runs beside the training, in the server process, so a PUT's `202` does not wait
for a large dataset to be encoded and written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlserver.config import Settings
from mlserver.errors import KeyNotFound, NotStorable
from mlserver.store.base import Store, StoredData, Version

__all__ = ["Inputs", "record"]

log = logging.getLogger("mlserver.lineage")


@dataclass(frozen=True)
class Inputs:
    """A job's lineage and re-run recipe, before its datasets are stored."""

    #: What `V["lineage"]` shows ("kind": fit, update or refit), but "data" (known once
    #: the data is stored).
    lineage: Mapping[str, Any]
    #: The re-run recipe (Version.job), without "chain" (set here).
    job: Mapping[str, Any]
    #: The new data the job learns from (None for a refit, which learns from stored data).
    x: pd.DataFrame | None = None
    y: pd.Series | pd.DataFrame | None = None
    #: An update's base: its stored history comes before the update's own data.
    base: Version | None = None
    #: A refit's history: the datasets it replays, already stored.
    steps: tuple[str, ...] = field(default_factory=tuple)


def record(store: Store, settings: Settings, version: Version, inputs: Inputs) -> str | None:
    """Store `inputs` for the RUNNING `version`; returns the sha256 of its data, or None
    when the data is not stored (then the version can be neither refitted nor run again)."""
    if inputs.x is None:  # a refit: its history is stored already
        return _write(store, version, inputs, inputs.steps, (), chain=True)
    if not settings.store_training_data:
        return _write(store, version, inputs, (), (), chain=False)
    from mlserver.frames import stored  # PERF: the codec loads with the first fit

    sha = stored.content_digest(inputs.x, inputs.y)
    history: tuple[str, ...] = ()
    chain = True
    if inputs.base is not None:
        history = store.steps(inputs.base.id) if inputs.base.job.get("chain") else ()
        chain = bool(history)
    new: tuple[StoredData, ...] = ()
    for attempt in range(2):
        if sha not in store.stored_datasets((sha,)) or attempt:
            try:
                new = (_encoded(sha, inputs.x, inputs.y, settings.max_stored_data_bytes),)
            except NotStorable as exc:
                log.info(
                    "event=data_not_stored model=%s key=%s version=%d reason=%r",
                    version.model,
                    version.key,
                    version.version,
                    str(exc),
                )
                return _write(store, version, inputs, (), (), chain=False)
        try:
            return _write(store, version, inputs, (*history, sha), new, chain=chain)
        except KeyNotFound:
            # A dataset was deleted between our look and our write (its last version went):
            # store ours whatever the store had, and without a history that is gone.
            history, chain = (), False
    return None


def _encoded(sha: str, x: pd.DataFrame, y: Any, limit: int) -> StoredData:
    from mlserver.frames import stored

    encoded = stored.encode(x, y)
    if len(encoded.blob) > limit:
        raise NotStorable(
            f"the encoded data has {len(encoded.blob):,} bytes, above max_stored_data_bytes "
            f"({limit:,})"
        )
    return StoredData(
        sha256=sha,
        blob=encoded.blob,
        checksum=hashlib.sha256(encoded.blob).hexdigest(),
        format=stored.FORMAT,
        rows=encoded.rows,
        columns=encoded.columns,
        raw_bytes=encoded.raw_bytes,
    )


def _write(
    store: Store,
    version: Version,
    inputs: Inputs,
    steps: tuple[str, ...],
    datasets: tuple[StoredData, ...],
    *,
    chain: bool,
) -> str | None:
    data = steps[-1] if steps else None
    lineage = {**inputs.lineage, "data": data}
    job = {**inputs.job, "chain": chain} if steps else {}
    store.record_inputs(version.id, lineage=lineage, job=job, steps=steps, datasets=datasets)
    return data
