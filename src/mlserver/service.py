"""The use cases behind the five verbs (fit, predict, update, delete, status); no HTTP here.

Inputs are the decoded JSON values of a request's parameters; outputs are store Versions and
Predictions. Every check that can refuse a request runs before anything is stored.
"""

from __future__ import annotations

import functools
import logging
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn

from mlserver.arguments import (
    checked_name,
    flag,
    kwargs_object,
    model_key,
    promote_policy,
)
from mlserver.batching import Batches
from mlserver.cache import ModelCache, ServedCache
from mlserver.config import Settings
from mlserver.errors import (
    InvalidPayload,
    KeyNotFound,
    NotServable,
    Overloaded,
    StaleBase,
    StoreError,
    UnprocessableData,
    UnsupportedOperation,
)
from mlserver.frames.keys import name_key, training_key
from mlserver.frames.orients import decode_training, orient_of
from mlserver.frames.rows import Rows
from mlserver.frames.schema import Schema
from mlserver.jobs import Jobs, TrainingTask
from mlserver.lifecycle import Lifecycle
from mlserver.lineage import Lineage, fit_inputs, update_inputs
from mlserver.loaded import Loaded, asked_method, serializer_for, verified_blob
from mlserver.predictions import Prediction, model_output
from mlserver.provenance import DEFAULT_TARGET, library_skew, training_metadata
from mlserver.registry import Registry
from mlserver.scoring import (
    checked_rows,
    checked_scorable,
    checked_scoring,
    checked_validation,
    seed_of,
)
from mlserver.serializers.base import Serializer
from mlserver.signing import Signer
from mlserver.store.base import Claim, Status, Store, Version
from mlserver.version import mlserver_version
from mlserver.wrapper import ModelWrapper

if TYPE_CHECKING:
    from mlserver.importing import Imports
    from mlserver.overview import Overview

__all__ = ["OPERATIONS", "Service", "operations_of"]

log = logging.getLogger("mlserver.service")

#: How often a PATCH checks a newer base that finished meanwhile before it gives up (409).
_UPDATE_ATTEMPTS = 3


#: What a model can be asked to do; `update` only where its wrapper and serializer can.
OPERATIONS = ("status", "fit", "predict", "update", "delete")


def operations_of(wrapper: ModelWrapper) -> tuple[str, ...]:
    """The operations a model supports, in OPERATIONS order."""
    can_update = wrapper.supports_update and wrapper.get_serializer().can_update
    return tuple(
        op for op in OPERATIONS if (op != "update" or can_update) and (op != "fit" or wrapper.fits)
    )


class Service:
    """Fit, predict, update, delete and report on models of one registry, in one store."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        settings: Settings | None = None,
        executor: Executor | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.registry = registry
        #: Verifies each blob before it is deserialized; None loads unsigned blobs as before.
        self.signer = signer
        self.store = store
        self.settings = settings or Settings()
        self._owns_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(
            self.settings.training_threads, thread_name_prefix="mlserver-train"
        )
        self.cache = ModelCache(self.settings.model_cache_size, self.settings.model_cache_bytes)
        #: Concurrent predicts of one version and method, stacked into one model call.
        self.batches = Batches(
            self.settings.max_batch_rows, self.settings.max_batch_delay_ms / 1000
        )
        #: Which version `served` (or another alias, or a number) names, per key.
        self.served = ServedCache(self.settings.freshness_seconds)
        self.jobs = Jobs(
            store,
            self.executor,
            self.settings,
            on_finished=lambda v: self.served.forget(v.model, v.key),
            signer=signer,
        )
        #: Version history, aliases, cancel and the paged key listing.
        self.lifecycle = Lifecycle(registry, store, self.served, self.jobs)
        self.jobs.rerun = lambda version, place: self.lineage.rerun(version, place)
        self.version = mlserver_version()
        self._libraries = {
            "python": platform.python_version(),
            "mlserver": self.version,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        }

    @functools.cached_property
    def lineage(self) -> Lineage:
        """Stored training data, refits, and the keys a library upgrade affects."""
        return Lineage(self)

    @functools.cached_property
    def imports(self) -> Imports:
        """Models trained elsewhere, imported as versions; any version's bytes exported."""
        from mlserver.importing import Imports  # PERF: loaded with the first import or export

        return Imports(self)

    @functools.cached_property
    def overview(self) -> Overview:
        """What the dashboard shows: models, keys, versions and jobs at a glance."""
        from mlserver.overview import Overview  # PERF: loaded with the first dashboard page

        return Overview(self)

    # -- use cases -------------------------------------------------------------------------

    def operations(self, name: str) -> tuple[str, ...]:
        """The operations model `name` supports; ModelNotFound for an unknown model."""
        return operations_of(self.registry.get(name))

    def require(self, name: str, operation: str) -> ModelWrapper:
        """The model's wrapper; ModelNotFound, or UnsupportedOperation if it lacks `operation`."""
        wrapper = self.registry.get(name)
        supported = operations_of(wrapper)
        if operation not in supported:
            raise UnsupportedOperation(
                f"model {name!r} does not support {operation}",
                model=name,
                operation=operation,
                supported=supported,
            )
        return wrapper

    def fit(
        self,
        name: str,
        *,
        x: Any,
        y: Any = None,
        orient: str | None = None,
        modkwargs: Any = None,
        algkwargs: Any = None,
        retrain: Any = False,
        key_name: Any = None,
        promote: Any = None,
        validation: Any = None,
        scoring: Any = None,
    ) -> Claim:
        """Start training the model registered as `name` unless the key already has a
        FINISHED (and no `retrain`) or RUNNING version; `Claim.created` tells which.
        `key_name` names the key instead of the data's hash. With `validation`, that share
        of the rows is held out and scored (`scoring`); `promote` decides whether the
        version becomes `served` when it finishes."""
        wrapper = self.registry.get(name)
        orient = orient_of(orient)
        table, target = decode_training(
            x, y, orient, max_rows=self.settings.max_rows, max_columns=self.settings.max_columns
        )
        modkwargs = kwargs_object(modkwargs, "modkwargs")
        algkwargs = kwargs_object(algkwargs, "algkwargs")
        retrain = flag(retrain, "retrain")
        key_name = checked_name(key_name)
        promote = promote_policy(promote)
        validation = checked_validation(validation)
        scoring = checked_scoring(scoring)
        checked_rows(len(table.frame), validation)
        key = (
            name_key(key_name)
            if key_name is not None
            else training_key(table.frame, target, modkwargs, algkwargs)
        )
        try:
            estimator = wrapper.make_model(**modkwargs)
        except Exception as exc:  # whatever the user's constructor rejects is a 400
            raise InvalidPayload(f"modkwargs rejected by {name}: {exc}", "modkwargs") from None
        checked_scorable(estimator, scoring, validation)

        try:
            place = self.jobs.reserve()
        except Overloaded:
            # A PUT that would start nothing is answered as the claim would answer it.
            newest = self.store.newest(name, key)
            if newest is not None and (
                newest.status is Status.RUNNING
                or (newest.status is Status.FINISHED and not retrain)
            ):
                return Claim(newest, created=False)
            raise
        with place:
            claim = self.store.claim(
                name,
                key,
                worker=self.jobs.worker,
                lease_seconds=self.settings.lease_seconds,
                retrain=retrain,
            )
            if claim.created:
                task, metadata = self.fit_job(
                    wrapper,
                    key,
                    table.frame,
                    target,
                    model=estimator,
                    modkwargs=modkwargs,
                    algkwargs=algkwargs,
                    validation=validation,
                    scoring=scoring,
                    name=key_name,
                )
                job = {
                    "modkwargs": modkwargs,
                    "algkwargs": algkwargs,
                    "validation": validation,
                    "scoring": scoring,
                    "promote": promote,
                    "name": key_name,
                }
                inputs = fit_inputs(table.frame, target, job)
                self.jobs.submit(
                    claim.version, task, metadata, place, promote=promote, inputs=inputs
                )
        return claim

    def predict(
        self,
        name: str,
        *,
        key: Any,
        x: Any,
        orient: str | None = None,
        method: Any = None,
        version: Any = None,
        alias: Any = None,
    ) -> Prediction:
        """Predict with the version `served` names, also while a newer one trains; or with
        version number `version`, or the one `alias` names (not both).

        `method` picks `predict`, `predict_proba`, `decision_function` or `transform`, among
        those the wrapper allows and the fitted model has. Without it: `predict` where the
        model has it, else its only method (`transform` for a transformer).
        """
        wrapper = self.registry.get(name)
        key = model_key(key)
        orient = orient_of(orient)
        asked = asked_method(wrapper, method)
        if x is None:
            raise InvalidPayload("missing parameter 'x'", "x")
        version, loaded = self._loaded(wrapper, name, key, version, alias)
        method = loaded.method(asked, wrapper.methods, f"{name} (version {version.version})")
        # NOTE: x is decoded once the training schema is known, so numeric tables go
        # straight into the array a model's array form takes (see Schema.rows).
        rows = loaded.schema.rows(
            x, orient, max_rows=self.settings.max_rows, max_columns=self.settings.max_columns
        )
        return self._predicted(wrapper, loaded, version, method, rows)

    def predict_rows(
        self,
        name: str,
        *,
        key: Any,
        rows: Callable[[Schema], Rows],
        methods: Sequence[Any] | None = None,
        version: Any = None,
        alias: Any = None,
    ) -> list[Prediction]:
        """`predict` for inputs that need the training schema to become rows (V2 tensors):
        `rows(schema)` gives them, then they are conformed and limited as any x; one
        Prediction per method of `methods` (None: the default method), in that order."""
        wrapper = self.registry.get(name)
        key = model_key(key)
        asked = [asked_method(wrapper, m) for m in (methods or [None])]
        version, loaded = self._loaded(wrapper, name, key, version, alias)
        what = f"{name} (version {version.version})"
        chosen = [loaded.method(m, wrapper.methods, what) for m in asked]
        made = rows(loaded.schema)
        given = loaded.schema.rows(
            made,
            made.orient,
            max_rows=self.settings.max_rows,
            max_columns=self.settings.max_columns,
        )
        return [self._predicted(wrapper, loaded, version, m, given) for m in chosen]

    def loaded(
        self, name: str, *, key: Any, version: Any = None, alias: Any = None
    ) -> tuple[Version, Loaded]:
        """The FINISHED version a predict would run (`served`, or `version` or `alias`) and
        its loaded model, schema and methods (V2's model metadata describes them)."""
        return self._loaded(self.registry.get(name), name, model_key(key), version, alias)

    def _loaded(
        self, wrapper: ModelWrapper, name: str, key: str, version: Any, alias: Any
    ) -> tuple[Version, Loaded]:
        """The version a predict runs (see Lifecycle.select) and its loaded model."""
        found = self.lifecycle.select(name, key, version, alias)
        try:
            return found, self._load(wrapper, found)
        except KeyNotFound:  # deleted by another process since we last looked
            self.served.forget(name, key)
            raise

    def _predicted(
        self, wrapper: ModelWrapper, loaded: Loaded, version: Version, method: str, rows: Rows
    ) -> Prediction:
        batches = self.batches
        if batches.enabled and wrapper.batchable and rows.shape[0] <= batches.max_rows:
            raw = batches.run(
                (version.id, method), rows, lambda r: loaded.run(wrapper, method, r, version)
            )
        else:
            raw = loaded.run(wrapper, method, rows, version)
        output = model_output(
            raw, rows, loaded.model, method, loaded.targets, self.settings.max_output_cells
        )
        return Prediction(version.key, version.version, output, loaded.warnings, method=method)

    def version_warnings(self, name: str, version: Version, *, update: bool = False) -> list[str]:
        """Library-version skew between the version's training and this process (for
        serving it, or with `update` for loading it to update)."""
        serializer = self.serializer_for(self.registry.get(name), version)
        serving = {**self._libraries, **serializer.library_versions()}
        libraries = serializer.skew_libraries
        if update and serializer.update_skew_libraries is not None:
            libraries = serializer.update_skew_libraries
        return library_skew(version.metadata.get("libraries") or {}, serving, libraries)

    def update(
        self,
        name: str,
        *,
        key: Any,
        x: Any,
        y: Any = None,
        orient: str | None = None,
        promote: Any = None,
    ) -> Version:
        """Start a job that updates the `served` version with new data; with y, the job
        first scores that version on the new rows (prequential, test-then-train)."""
        wrapper = self.require(name, "update")
        key = model_key(key)
        orient = orient_of(orient)
        promote = promote_policy(promote)
        table, target = decode_training(
            x, y, orient, max_rows=self.settings.max_rows, max_columns=self.settings.max_columns
        )
        # A version that finishes while we check is taken up by checking again (rarely more
        # than once); the claim starts a job only on the base that was checked.
        # NOTE: checked once before a place is reserved, so a bad PATCH is its 4xx even
        # when the queue is full (503).
        checked = self._update_base(wrapper, name, key, table, orient)
        with self.jobs.reserve() as place:
            for attempt in range(_UPDATE_ATTEMPTS):
                if attempt:
                    checked = self._update_base(wrapper, name, key, table, orient)
                base, frame, schema, blob = checked
                try:
                    version, _ = self.store.claim_update(
                        name,
                        key,
                        worker=self.jobs.worker,
                        lease_seconds=self.settings.lease_seconds,
                        base_id=base.id,
                    )
                    break
                except StaleBase:
                    if attempt == _UPDATE_ATTEMPTS - 1:
                        raise
            task, metadata = self.update_job(wrapper, base, blob, frame, target, schema)
            inputs = update_inputs(frame, target, base, promote)
            self.jobs.submit(version, task, metadata, place, promote=promote, inputs=inputs)
        return version

    def _update_base(
        self, wrapper: ModelWrapper, name: str, key: str, table: Rows, orient: str
    ) -> tuple[Version, pd.DataFrame, Schema, bytes]:
        """The version a PATCH would update, checked: it can be updated and loaded, and `x`
        conforms to its schema; with `x` so conformed, its schema and its bytes."""
        # NOTE: from the database, not the cache: the claim refuses any base but the newest,
        # which another process may have written a moment ago.
        base = self.lifecycle.select(name, key, cached=False)
        modkwargs = (base.metadata.get("kwargs") or {}).get("modkwargs") or {}
        refusal = wrapper.cannot_update(**modkwargs)
        if refusal:
            raise UnprocessableData(
                f"{name} {key!r} (version {base.version}) cannot be updated: {refusal}"
            )
        # NOTE: an update unpickles its base as a predict would: the same skew policy.
        self._skew(wrapper, base, update=True)
        blob = verified_blob(self.store, self.signer, base)
        if not self.serializer_for(wrapper, base).updatable(blob):
            raise UnprocessableData(
                f"{name} {key!r} (version {base.version}) cannot be updated: its "
                f"{base.serializer} artifact keeps no model that learns further"
            )
        schema = Schema.from_json(base.metadata["features"])
        frame = schema.conform(table.frame, positional=orient == "values")
        return base, frame, schema, blob

    def delete(self, name: str, *, key: Any) -> int:
        """Delete every version of a key; a job still training it is discarded when it ends."""
        self.registry.get(name)
        key = model_key(key)
        deleted = self.store.delete(name, key)
        self.served.forget(name, key)
        if not deleted:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        return deleted

    def status(self, name: str, *, key: Any) -> Version:
        """The newest version of a key, whatever its status."""
        self.registry.get(name)
        key = model_key(key)
        version = self.store.newest(name, key)
        if version is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        return version

    def models(self) -> list[dict[str, Any]]:
        """What each registered model offers, for `GET /models`."""
        return [
            {
                "model": wrapper.name,
                "serializer": wrapper.get_serializer().name,
                "operations": list(operations_of(wrapper)),
                "update": wrapper.supports_update,
                "methods": list(wrapper.methods),
                "description": first_line(type(wrapper).__doc__),
            }
            for wrapper in self.registry
        ]

    def ready(self) -> None:
        """Raise StoreError unless the store answers."""
        self.store.ping()

    def start(self) -> None:
        """Create or migrate the store's schema, sweep interrupted jobs once and start the
        lease heartbeat (idempotent); the app calls it when it starts serving, so building a
        Service does no I/O.

        Raises ConfigurationError for a database this release cannot use (e.g. one written
        by a newer release); a store that does not answer is logged, and tried again later.
        """
        try:
            self.store.prepare()
        except StoreError as exc:
            log.warning("event=store_unprepared error=%r", str(exc))
        self.jobs.start()

    def close(self, timeout: float | None = None) -> int:
        """Stop training: queued jobs are FAILED (cancelled), running ones are waited for
        (their leases renewed meanwhile), at most `timeout` seconds if given.

        Jobs still running after `timeout` are abandoned to the lease rules (their versions
        stay RUNNING until a live process marks them interrupted); returns how many. A thread
        still running a fit (abandoned, or timed out) cannot be stopped: it runs until its fit
        returns, and the interpreter waits for it at exit.
        """
        left = self.jobs.close(timeout)
        if self._owns_executor:
            # NOTE: waiting for a thread whose fit never returns would never end.
            self.executor.shutdown(wait=not self.jobs.busy, cancel_futures=True)
        return left

    def serializer_for(self, wrapper: ModelWrapper, version: Version) -> Serializer:
        """The serializer `version` loads with, trusting the `trusted_types` setting."""
        return serializer_for(wrapper, version, self.settings.trusted_types)

    # -- helpers ---------------------------------------------------------------------------

    def _load(self, wrapper: ModelWrapper, version: Version) -> Loaded:
        def load() -> Loaded:
            warnings = self._skew(wrapper, version)
            if warnings:
                log.warning(
                    "event=version_skew model=%s key=%s version=%d detail=%r",
                    version.model,
                    version.key,
                    version.version,
                    "; ".join(warnings),
                )
            serializer = self.serializer_for(wrapper, version)
            model = serializer.loads(verified_blob(self.store, self.signer, version))
            schema = Schema.from_json(version.metadata["features"])
            targets = tuple(version.metadata.get("targets") or (DEFAULT_TARGET,))
            return Loaded.of(wrapper, model, schema, targets, warnings)

        # NOTE: a version loads once per process, so its skew warning is logged once.
        return self.cache.get(version.id, load, size=version.size or 0)

    def _skew(
        self, wrapper: ModelWrapper, version: Version, update: bool = False
    ) -> tuple[str, ...]:
        """The version's library-skew warnings (for serving it, or for loading it to update);
        NotServable if the settings refuse skew."""
        warnings = tuple(self.version_warnings(wrapper.name, version, update=update))
        if warnings and self.settings.refuse_version_skew:
            use = "updated" if update else "served"
            raise NotServable(
                f"version {version.version} of {version.key!r} is not {use}: " + "; ".join(warnings)
            )
        return warnings

    def fit_job(
        self,
        wrapper: ModelWrapper,
        key: str,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None,
        *,
        model: Any,
        modkwargs: dict[str, Any],
        algkwargs: dict[str, Any],
        validation: float | None,
        scoring: str | None,
        name: str | None,
        updates: tuple[tuple[pd.DataFrame, Any], ...] = (),
    ) -> tuple[TrainingTask, dict[str, Any]]:
        """The task and metadata of a fit of `key` (a PUT's, a refit's or its re-run)."""
        schema = Schema.of(x)
        task = TrainingTask(
            wrapper,
            x,
            y,
            model=model,
            algkwargs=algkwargs,
            schema=schema,
            validation=validation,
            scoring=scoring,
            seed=seed_of(key),
            updates=updates,
        )
        metadata = self._metadata(wrapper, x, y, schema)
        metadata["kwargs"] = {"modkwargs": modkwargs, "algkwargs": algkwargs}
        metadata["scoring"] = scoring
        if name is not None:
            metadata["name"] = name
        return task, metadata

    def update_job(
        self,
        wrapper: ModelWrapper,
        base: Version,
        blob: bytes,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None,
        schema: Schema | None = None,
    ) -> tuple[TrainingTask, dict[str, Any]]:
        """The task and metadata of an update of `base` (a PATCH's or its re-run), x
        conformed to its schema (`schema`, when the caller has it already)."""
        schema = schema or Schema.from_json(base.metadata["features"])
        scoring = base.metadata.get("scoring")
        # The base loads with the serializer it was stored with; the update is stored with
        # the wrapper's own.
        task = TrainingTask(
            wrapper,
            x,
            y,
            base_blob=blob,
            schema=schema,
            base_serializer=self.serializer_for(wrapper, base),
            scoring=scoring,
            prequential=y is not None,
        )
        metadata = self._metadata(wrapper, x, y, schema)
        metadata["base_version"] = base.version
        metadata["kwargs"] = base.metadata.get("kwargs", {})
        metadata["scoring"] = scoring
        if "name" in base.metadata:
            metadata["name"] = base.metadata["name"]
        return task, metadata

    def _metadata(
        self,
        wrapper: ModelWrapper,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None,
        schema: Schema,
    ) -> dict[str, Any]:
        libraries = {**self._libraries, **wrapper.get_serializer().library_versions()}
        return training_metadata(x, y, schema, libraries)


def first_line(text: str | None) -> str:
    """The first non-blank line of a text (a docstring's summary, an error's headline)."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""
