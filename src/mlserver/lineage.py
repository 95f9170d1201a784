"""Lineage: what each version learnt from, kept in the store, and what it makes possible:
reading a version's training data back, refitting a version with the running libraries
(its history of updates replayed in order), running again a job a dead process left
behind, and finding the keys whose served version was trained with other library versions.
No HTTP here."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlserver.arguments import model_key, promote_policy, whole_number
from mlserver.errors import Conflict, KeyNotFound, MLServerError, Overloaded, StoreError
from mlserver.inputs import Inputs
from mlserver.job_places import Place
from mlserver.loaded import verified_blob
from mlserver.store.base import Claim, Status, Version
from mlserver.training import TrainingTask
from mlserver.wrapper import ModelWrapper

if TYPE_CHECKING:
    from mlserver.service import Service

__all__ = ["Lineage", "Skewed", "fit_inputs", "update_inputs"]

log = logging.getLogger("mlserver.lineage")

#: Keys read from the store per query while looking for skewed versions.
_KEY_PAGE = 1000

Frames = tuple[pd.DataFrame, pd.Series | pd.DataFrame | None]


@dataclass(frozen=True)
class Skewed:
    """A key whose served version was trained with other library versions than these."""

    version: Version
    warnings: tuple[str, ...]


def _decoded(blob: bytes) -> Frames:
    from mlserver.frames import stored  # PERF: the codec loads when data is read back

    return stored.decode(blob)


def _shape(x: pd.DataFrame) -> dict[str, int]:
    return {"rows": len(x), "columns": x.shape[1]}


def fit_inputs(x: pd.DataFrame, y: Any, job: Mapping[str, Any]) -> Inputs:
    """What a fit records: its data and how to fit it again."""
    lineage = {**_shape(x), "parent": None, "kind": "fit", "source": None}
    return Inputs(lineage, {**job, "kind": "fit", "base": None}, x=x, y=y)


def update_inputs(x: pd.DataFrame, y: Any, base: Version, promote: str) -> Inputs:
    """What an update records: its data, after its base's history."""
    lineage = {**_shape(x), "parent": base.version, "kind": "update", "source": None}
    job = {**_recipe(base), "kind": "update", "promote": promote, "base": base.version}
    return Inputs(lineage, job, x=x, y=y, base=base)


def _recipe(version: Version) -> dict[str, Any]:
    """The kwargs and scores a version was trained with, from its job or its metadata."""
    metadata = version.metadata
    kwargs = metadata.get("kwargs") or {}
    job = version.job
    return {
        "modkwargs": job.get("modkwargs", kwargs.get("modkwargs") or {}),
        "algkwargs": job.get("algkwargs", kwargs.get("algkwargs") or {}),
        "validation": job.get("validation"),
        "scoring": job.get("scoring", metadata.get("scoring")),
        "name": job.get("name", metadata.get("name")),
    }


class Lineage:
    """Stored training data, refits, re-runs, and the keys a library upgrade affects."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.registry = service.registry

    # -- reading ---------------------------------------------------------------------------

    def data(self, name: str, *, key: Any, version: Any) -> Frames:
        """The x and y version `version` was trained or updated on.

        Raises ModelNotFound, InvalidPayload (key or version malformed), KeyNotFound (no
        such version, or its data is not stored).
        """
        self.registry.get(name)
        key = model_key(key)
        number = whole_number(version, "version")
        found = self.store.version(name, key, number)
        if found is None:
            raise KeyNotFound(f"model-key {key!r} of {name!r} has no version {number}")
        sha = found.lineage.get("data")
        if not sha:
            raise KeyNotFound(f"the training data of version {number} of {key!r} is not stored")
        return _decoded(self.store.load_dataset(sha).blob)

    def skewed(self, models: tuple[str, ...] | None = None) -> Iterator[Skewed]:
        """Every key (of `models`, default every registered model) whose served version was
        trained with another major.minor of a library its serializer depends on."""
        names = models if models is not None else tuple(w.name for w in self.registry)
        for name in names:
            self.registry.get(name)
            after: str | None = None
            while True:
                page = self.store.keys(name, limit=_KEY_PAGE, after=after)
                for newest in page.items:
                    served = self.store.resolve(name, newest.key)
                    if served is None:
                        continue
                    warnings = self.service.version_warnings(name, served)
                    if warnings:
                        yield Skewed(served, tuple(warnings))
                if page.next is None:
                    break
                after = page.next

    # -- refit -----------------------------------------------------------------------------

    def refit(self, name: str, *, key: Any, version: Any = None, promote: Any = None) -> Claim:
        """Start a new version of the key trained from version `version`'s stored data and
        kwargs (the `served` one by default), its updates replayed in order, with the
        running libraries: `lineage.kind = "refit"`, `source` = that version. As PUT: a
        RUNNING version of the key is answered instead (`Claim.created` False).

        Raises ModelNotFound, InvalidPayload, KeyNotFound, NotReady (not FINISHED),
        Conflict (its data is not stored), Overloaded.
        """
        wrapper = self.registry.get(name)
        key = model_key(key)
        promote = promote_policy(promote)
        source = self.service.lifecycle.select(name, key, version, cached=False)
        steps, frames = self._history(source)
        recipe = _recipe(source)
        job = {**recipe, "kind": "refit", "promote": promote, "base": None}
        task, metadata = self._fit_task(wrapper, key, job, frames)
        try:
            place = self.service.jobs.reserve()
        except Overloaded:
            newest = self.store.newest(name, key)
            if newest is not None and newest.status is Status.RUNNING:
                return Claim(newest, created=False)
            raise
        with place:
            claim = self.store.claim(
                name,
                key,
                worker=self.service.jobs.worker,
                lease_seconds=self.service.settings.lease_seconds,
                retrain=True,
            )
            if claim.created:
                lineage = {
                    "rows": len(frames[-1][0]),
                    "columns": frames[-1][0].shape[1],
                    **(source.lineage or {}),
                    "parent": None,
                    "kind": "refit",
                    "source": source.version,
                }
                inputs = Inputs(lineage, job, steps=steps)
                self.service.jobs.submit(
                    claim.version, task, metadata, place, promote=promote, inputs=inputs
                )
        return claim

    def _history(self, version: Version) -> tuple[tuple[str, ...], list[Frames]]:
        """The datasets a version learnt from, in order, and their frames; Conflict when
        any is not stored."""
        if version.lineage.get("kind") == "import":
            raise Conflict(
                f"version {version.version} of {version.key!r} cannot be refitted: it was "
                "imported, trained elsewhere on data this server never had"
            )
        steps = self.store.steps(version.id) if version.job.get("chain") else ()
        if not steps:
            raise Conflict(
                f"version {version.version} of {version.key!r} cannot be refitted: the data "
                "it learnt from is not stored (trained before lineage, too large, with "
                "store_training_data off, or updated from an imported version)"
            )
        try:
            return steps, [self._frames(sha) for sha in steps]
        except KeyNotFound:
            raise Conflict(
                f"version {version.version} of {version.key!r} cannot be refitted: one of "
                "its datasets is no longer stored"
            ) from None

    def _frames(self, sha: str) -> Frames:
        return _decoded(self.store.load_dataset(sha).blob)

    def _fit_task(
        self, wrapper: ModelWrapper, key: str, job: Mapping[str, Any], frames: list[Frames]
    ) -> tuple[TrainingTask, dict[str, Any]]:
        """A fit of stored frames (a refit's: the fit, then its updates), and its metadata."""
        modkwargs = dict(job.get("modkwargs") or {})
        try:
            model = wrapper.make_model(**modkwargs)
        except Exception as exc:  # e.g. a keyword the running scikit-learn no longer takes
            raise Conflict(
                f"{wrapper.name} no longer takes the kwargs it was fitted with: {exc}"
            ) from None
        (x, y), updates = frames[0], tuple(frames[1:])
        return self.service.fit_job(
            wrapper,
            key,
            x,
            y,
            model=model,
            modkwargs=modkwargs,
            algkwargs=dict(job.get("algkwargs") or {}),
            validation=job.get("validation"),
            scoring=job.get("scoring"),
            name=job.get("name"),
            updates=updates,
        )

    # -- re-runs ---------------------------------------------------------------------------

    def rerun(self, version: Version, place: Place) -> None:
        """Run again the job of `version`, adopted from a dead process: the same data,
        kwargs and version number. A job that cannot be rebuilt is FAILED saying why."""
        try:
            self._rerun(version, place)
        except (MLServerError, KeyError, TypeError, ValueError) as exc:
            reason = f"interrupted, and could not run again: {exc}"
            log.warning(
                "event=job_not_run_again model=%s key=%s version=%d reason=%r",
                version.model,
                version.key,
                version.version,
                reason,
            )
            try:
                self.store.fail(version.id, reason)
            except StoreError:
                log.exception("event=job_fail_unrecorded version_id=%d", version.id)

    def _rerun(self, version: Version, place: Place) -> None:
        job = version.job
        steps = self.store.steps(version.id)
        if not steps:
            raise KeyNotFound("its inputs are not stored")
        wrapper = self.registry.get(version.model)
        promote = job.get("promote") or "always"
        if job.get("kind") != "update":
            frames = [self._frames(sha) for sha in steps]
            task, metadata = self._fit_task(wrapper, version.key, job, frames)
            self.service.jobs.submit(version, task, metadata, place, promote=promote)
            return
        base = self.store.version(version.model, version.key, int(job["base"]))
        if base is None or base.status is not Status.FINISHED:
            raise KeyNotFound(f"its base, version {job['base']}, is gone")
        x, y = self._frames(steps[-1])
        blob = verified_blob(self.store, self.service.signer, base)
        task, metadata = self.service.update_job(wrapper, base, blob, x, y)
        self.service.jobs.submit(version, task, metadata, place, promote=promote)
