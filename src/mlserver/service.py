"""The use cases behind the five verbs (fit, predict, update, delete, status); no HTTP here.

Inputs are the decoded JSON values of a request's parameters; outputs are store Versions and
Predictions. Every check that can refuse a request runs before anything is stored.
"""

from __future__ import annotations

import functools
import logging
import platform
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sklearn

from mlserver.arrays import array_model
from mlserver.cache import ModelCache, NewestCache
from mlserver.config import Settings
from mlserver.errors import (
    InvalidPayload,
    KeyNotFound,
    MLServerError,
    NotReady,
    NotServable,
    Overloaded,
    StaleBase,
    StoreError,
    UnprocessableData,
    UnsupportedOperation,
)
from mlserver.frames import (
    ORIENTS,
    Schema,
    Table,
    align_target,
    decode_frame,
    decode_target,
    default_index,
    dumps,
    encode_array,
    encode_arrow,
    encode_arrow_array,
    encode_frame,
    name_key,
    training_key,
)
from mlserver.jobs import Jobs, TrainingTask
from mlserver.registry import Registry
from mlserver.serializers.base import Serializer, has_method, resolve_serializer
from mlserver.signing import Signer
from mlserver.store.base import Claim, Status, Store, Version
from mlserver.wrapper import ModelWrapper

__all__ = ["OPERATIONS", "Prediction", "Service", "operations_of"]

log = logging.getLogger("mlserver.service")

DEFAULT_TARGET = "y"
#: How often a PATCH checks a newer base that finished meanwhile before it gives up (409).
_UPDATE_ATTEMPTS = 3


class Prediction:
    """Predictions for x's rows, to answer in the orient and form x came in.

    A model's array output stays an array (`values`, with one name per column in `columns`)
    until it is encoded; `frame` is set instead when the wrapper answered with a DataFrame.
    """

    def __init__(
        self,
        key: str,
        version: int,
        orient: str,
        output: pd.DataFrame | tuple[np.ndarray, list[Any]],
        index: pd.Index | None,
        as_string: bool = False,
        warnings: tuple[str, ...] = (),
        method: str = "predict",
    ) -> None:
        self.key = key
        self.version = version
        #: The method that made the answer (the model's only one when none was asked for).
        self.method = method
        self.orient = orient
        self.as_string = as_string
        self.warnings = warnings
        #: x's row labels; None stands for 0..n-1.
        self.index = index
        self.frame: pd.DataFrame | None = None
        self.values: np.ndarray | None = None
        self.columns: list[Any] = []
        if isinstance(output, pd.DataFrame):
            labels = pd.RangeIndex(len(output)) if index is None else index
            self.frame = output.set_axis(labels, axis=0)
        else:
            self.values, self.columns = output

    def arrow(self) -> bytes:
        """The answer as an Arrow IPC stream, x's index kept."""
        if self.frame is not None:
            return encode_arrow(self.frame)
        return encode_arrow_array(self.values, self.columns, self.index)

    @functools.cached_property
    def y(self) -> Any:
        """The JSON answer: text when x came as text, else the value, in x's orient."""
        if self.frame is not None:
            value = encode_frame(self.frame, self.orient)
        else:
            value = encode_array(self.values, self.columns, self.index, self.orient)
        if self.as_string:
            return dumps(value).decode()
        return value


@dataclass(frozen=True)
class _Loaded:
    model: Any
    schema: Schema
    targets: tuple[Any, ...]
    warnings: tuple[str, ...]
    #: The model's form that takes conformed rows as one float64 array (see mlserver.arrays).
    direct: Any = None
    #: The wrapper's methods this model can run (see `_offered`), found once per load.
    offered: tuple[str, ...] = ()


def _mlserver_version() -> str:
    try:
        return importlib_metadata.version("ml-server")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


#: What a model can be asked to do; `update` only where its wrapper and serializer can.
OPERATIONS = ("status", "fit", "predict", "update", "delete")


def operations_of(wrapper: ModelWrapper) -> tuple[str, ...]:
    """The operations a model supports, in OPERATIONS order."""
    can_update = wrapper.supports_update and wrapper.get_serializer().can_update
    return tuple(op for op in OPERATIONS if op != "update" or can_update)


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
        self.newest = NewestCache(self.settings.freshness_seconds)
        self.jobs = Jobs(
            store,
            self.executor,
            self.settings,
            on_finished=lambda v: self.newest.forget(v.model, v.key),
            signer=signer,
        )
        self.version = _mlserver_version()
        self._libraries = {
            "python": platform.python_version(),
            "mlserver": self.version,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        }

    # -- use cases -------------------------------------------------------------------------

    def operations(self, model: str) -> tuple[str, ...]:
        """The operations `model` supports; ModelNotFound for an unknown model."""
        return operations_of(self.registry.get(model))

    def require(self, model: str, operation: str) -> ModelWrapper:
        """The model's wrapper; ModelNotFound, or UnsupportedOperation if it lacks `operation`."""
        wrapper = self.registry.get(model)
        supported = operations_of(wrapper)
        if operation not in supported:
            raise UnsupportedOperation(
                f"model {model!r} does not support {operation}",
                model=model,
                operation=operation,
                supported=supported,
            )
        return wrapper

    def fit(
        self,
        model: str,
        *,
        x: Any,
        y: Any = None,
        orient: str | None = None,
        modkwargs: Any = None,
        algkwargs: Any = None,
        retrain: Any = False,
        name: Any = None,
    ) -> Claim:
        """Start training unless the key already has a FINISHED (and no `retrain`) or RUNNING
        version; `Claim.created` tells which."""
        wrapper = self.registry.get(model)
        orient = _orient(orient)
        table = decode_frame(x, orient, "x")
        self._within_limits(table.shape)
        target = None if y is None else align_target(table.frame, decode_target(y, orient))
        modkwargs = _kwargs(modkwargs, "modkwargs")
        algkwargs = _kwargs(algkwargs, "algkwargs")
        retrain = _flag(retrain, "retrain")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidPayload("name must be a non-empty string", "name")
        key = (
            name_key(name)
            if name is not None
            else training_key(table.frame, target, modkwargs, algkwargs)
        )
        try:
            estimator = wrapper.make_model(**modkwargs)
        except Exception as exc:  # whatever the user's constructor rejects is a 400
            raise InvalidPayload(f"modkwargs rejected by {model}: {exc}", "modkwargs") from None

        try:
            place = self.jobs.reserve()
        except Overloaded:
            # A PUT that would start nothing is answered as the claim would answer it.
            newest = self.store.newest(model, key)
            if newest is not None and (
                newest.status is Status.RUNNING
                or (newest.status is Status.FINISHED and not retrain)
            ):
                return Claim(newest, created=False)
            raise
        with place:
            claim = self.store.claim(
                model,
                key,
                worker=self.jobs.worker,
                lease_seconds=self.settings.lease_seconds,
                retrain=retrain,
            )
            if claim.created:
                schema = Schema.of(table.frame)
                task = TrainingTask(
                    wrapper,
                    table.frame,
                    target,
                    model=estimator,
                    algkwargs=algkwargs,
                    schema=schema,
                )
                metadata = self._metadata(wrapper, table.frame, target, schema)
                metadata["kwargs"] = {"modkwargs": modkwargs, "algkwargs": algkwargs}
                if name is not None:
                    metadata["name"] = name
                self.jobs.submit(claim.version, task, metadata)
        return claim

    def predict(
        self,
        model: str,
        *,
        key: Any,
        x: Any,
        orient: str | None = None,
        method: Any = None,
    ) -> Prediction:
        """Predict with the newest FINISHED version, also while a newer one trains.

        `method` picks `predict`, `predict_proba`, `decision_function` or `transform`, among
        those the wrapper allows and the fitted model has. Without it: `predict` where the
        model has it, else its only method (`transform` for a transformer).
        """
        wrapper = self.registry.get(model)
        key = _key(key)
        orient = _orient(orient)
        asked = _method(wrapper, method)
        if x is None:
            raise InvalidPayload("missing parameter 'x'", "x")
        version = self._newest_finished(model, key)
        try:
            loaded = self._load(wrapper, version)
        except KeyNotFound:  # deleted by another process since we last looked
            self.newest.forget(model, key)
            raise
        # NOTE: x is decoded once the training schema is known, so numeric tables can skip
        # the general frame building (see frames.decode_frame).
        table = decode_frame(x, orient, "x", loaded.schema)
        self._within_limits(table.shape)
        method = _chosen(loaded, asked, wrapper.methods, f"{model} (version {version.version})")
        # The model's array form, where it has one and the wrapper just calls the model.
        direct = None
        if loaded.direct is not None and _calls_model(wrapper, method):
            direct = getattr(loaded.direct, method, None)
        frame, index = None, table.given_index
        if not table.conformed:
            frame = loaded.schema.conform(table.frame, positional=orient == "values")
            index = None if default_index(frame.index) else frame.index
        try:
            if direct is not None:
                raw = direct(table.array if frame is None else frame.to_numpy(dtype=np.float64))
            else:
                raw = wrapper.apply(loaded.model, table.frame if frame is None else frame, method)
        except (MemoryError, MLServerError):  # not the rows' fault, or already worded
            raise
        except Exception as exc:  # the model's own code refusing these rows
            log.info(
                "event=model_refused model=%s key=%s version=%d method=%s error=%r",
                model,
                key,
                version.version,
                method,
                f"{type(exc).__name__}: {exc}",
            )
            raise UnprocessableData(
                f"the model cannot {method} on x: {type(exc).__name__}: {exc}"
            ) from None
        output = _output(raw, table.shape[0], loaded.model, method, loaded.targets, self.settings)
        return Prediction(
            key,
            version.version,
            table.orient,
            output,
            index,
            table.as_string,
            loaded.warnings,
            method=method,
        )

    def warnings(self, model: str, version: Version, *, update: bool = False) -> list[str]:
        """Library-version skew between the version's training and this process (for
        serving it, or with `update` for loading it to update)."""
        serializer = self._serializer_for(self.registry.get(model), version)
        trained = version.metadata.get("libraries") or {}
        serving = {**self._libraries, **serializer.library_versions()}
        found = []
        libraries = serializer.skew_libraries
        if update and serializer.update_skew_libraries is not None:
            libraries = serializer.update_skew_libraries
        for library in libraries:
            then, now = trained.get(library), serving.get(library)
            if then and now and _major_minor(then) != _major_minor(now):
                found.append(f"trained with {library} {then}, served with {library} {now}")
        return found

    def update(
        self, model: str, *, key: Any, x: Any, y: Any = None, orient: str | None = None
    ) -> Version:
        """Start a job that updates the newest FINISHED version with new data."""
        wrapper = self.require(model, "update")
        key = _key(key)
        orient = _orient(orient)
        table = decode_frame(x, orient, "x")
        self._within_limits(table.shape)
        target = None if y is None else align_target(table.frame, decode_target(y, orient))
        # A version that finishes while we check is taken up by checking again (rarely more
        # than once); the claim starts a job only on the base that was checked.
        # NOTE: checked once before a place is reserved, so a bad PATCH is its 4xx even
        # when the queue is full (503).
        checked = self._update_base(wrapper, model, key, table, orient)
        with self.jobs.reserve():
            for attempt in range(_UPDATE_ATTEMPTS):
                if attempt:
                    checked = self._update_base(wrapper, model, key, table, orient)
                base, frame, schema, blob = checked
                try:
                    version, _ = self.store.claim_update(
                        model,
                        key,
                        worker=self.jobs.worker,
                        lease_seconds=self.settings.lease_seconds,
                        base_id=base.id,
                    )
                    break
                except StaleBase:
                    if attempt == _UPDATE_ATTEMPTS - 1:
                        raise
            metadata = self._metadata(wrapper, frame, target, schema)
            metadata["base_version"] = base.version
            metadata["kwargs"] = base.metadata.get("kwargs", {})
            if "name" in base.metadata:
                metadata["name"] = base.metadata["name"]
            # The base loads with the serializer it was stored with; the update is stored
            # with the wrapper's own.
            base_serializer = self._serializer_for(wrapper, base)
            task = TrainingTask(
                wrapper,
                frame,
                target,
                base_blob=blob,
                schema=schema,
                base_serializer=base_serializer,
            )
            self.jobs.submit(version, task, metadata)
        return version

    def _update_base(
        self, wrapper: ModelWrapper, model: str, key: str, table: Table, orient: str
    ) -> tuple[Version, pd.DataFrame, Schema, bytes]:
        """The version a PATCH would update, checked: it can be updated and loaded, and `x`
        conforms to its schema; with `x` so conformed, its schema and its bytes."""
        # NOTE: from the database, not the cache: the claim refuses any base but the newest,
        # which another process may have written a moment ago.
        base = self._newest_finished(model, key, cached=False)
        modkwargs = (base.metadata.get("kwargs") or {}).get("modkwargs") or {}
        refusal = wrapper.cannot_update(**modkwargs)
        if refusal:
            raise UnprocessableData(
                f"{model} {key!r} (version {base.version}) cannot be updated: {refusal}"
            )
        # NOTE: an update unpickles its base as a predict would: the same skew policy.
        self._skew(wrapper, base, update=True)
        schema = Schema.from_json(base.metadata["features"])
        frame = schema.conform(table.frame, positional=orient == "values")
        return base, frame, schema, self._blob(base)

    def delete(self, model: str, *, key: Any) -> int:
        """Delete every version of a key; a job still training it is discarded when it ends."""
        self.registry.get(model)
        key = _key(key)
        deleted = self.store.delete(model, key)
        self.newest.forget(model, key)
        if not deleted:
            raise KeyNotFound(f"model-key {key!r} has no versions of {model!r}")
        return deleted

    def status(self, model: str, *, key: Any) -> Version:
        """The newest version of a key, whatever its status."""
        self.registry.get(model)
        key = _key(key)
        version = self.store.newest(model, key)
        if version is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {model!r}")
        return version

    def keys(self, model: str) -> list[Version]:
        """The newest version of every key of a model."""
        self.registry.get(model)
        return self.store.keys(model)

    def models(self) -> list[dict[str, Any]]:
        """What each registered model offers, for `GET /models`."""
        return [
            {
                "model": wrapper.name,
                "serializer": wrapper.get_serializer().name,
                "operations": list(operations_of(wrapper)),
                "update": wrapper.supports_update,
                "methods": list(wrapper.methods),
                "description": _first_line(type(wrapper).__doc__),
            }
            for wrapper in self.registry
        ]

    def ready(self) -> None:
        """Raise StoreError unless the store answers."""
        self.store.ping()

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

    # -- helpers ---------------------------------------------------------------------------

    def _newest_finished(self, model: str, key: str, *, cached: bool = True) -> Version:
        """The newest FINISHED version; `cached` allows the per-process cache's answer, which
        may be up to `freshness_seconds` behind other processes."""
        version = self.newest.get(model, key) if cached else None
        if version is not None:
            return version
        version = self.store.newest(model, key, finished=True)
        if version is not None:
            self.newest.put(model, key, version)
            return version
        newest = self.store.newest(model, key)
        if newest is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {model!r}")
        if newest.status is Status.FINISHED:  # it finished between our two reads
            return newest
        detail = f": {newest.error}" if newest.error else ""
        raise NotReady(
            f"no version of {key!r} has finished; the newest is {newest.status}{detail}",
            newest.status.value,
        )

    def _load(self, wrapper: ModelWrapper, version: Version) -> _Loaded:
        def load() -> _Loaded:
            warnings = self._skew(wrapper, version)
            if warnings:
                log.warning(
                    "event=version_skew model=%s key=%s version=%d detail=%r",
                    version.model,
                    version.key,
                    version.version,
                    "; ".join(warnings),
                )
            serializer = self._serializer_for(wrapper, version)
            model = serializer.loads(self._blob(version))
            schema = Schema.from_json(version.metadata["features"])
            targets = tuple(version.metadata.get("targets") or (DEFAULT_TARGET,))
            direct = array_model(model, schema.columns) if schema.numeric else None
            offered = _offered(wrapper, model)
            return _Loaded(model, schema, targets, warnings, direct, offered)

        # NOTE: a version loads once per process, so its skew warning is logged once.
        return self.cache.get(version.id, load, size=version.size or 0)

    def _skew(
        self, wrapper: ModelWrapper, version: Version, update: bool = False
    ) -> tuple[str, ...]:
        """The version's library-skew warnings (for serving it, or for loading it to update);
        NotServable if the settings refuse skew."""
        warnings = tuple(self.warnings(wrapper.name, version, update=update))
        if warnings and self.settings.refuse_version_skew:
            use = "updated" if update else "served"
            raise NotServable(
                f"version {version.version} of {version.key!r} is not {use}: " + "; ".join(warnings)
            )
        return warnings

    def _blob(self, version: Version) -> bytes:
        """A version's bytes, checked against its signature when the server signs blobs:
        nothing deserializes bytes (here or in an update job) before this check."""
        blob = self.store.load_blob(version)
        if self.signer is None:
            return blob
        where = {
            "model": version.model,
            "key": version.key,
            "version": version.version,
            "serializer": str(version.serializer),
            "row_id": version.id,
            "created": version.created,
            "metadata": version.metadata,
        }
        verified = self.signer.verify(blob, version.signature, **where)
        if verified.legacy:
            # A 0.1.0 signature is replaced by one bound to this row, once.
            signature = self.signer.sign(blob, **where)
            try:
                self.store.resign(version.id, version.signature, signature)
            except StoreError as exc:
                log.warning("event=resign_failed version_id=%d error=%r", version.id, str(exc))
        return blob

    def _within_limits(self, shape: tuple[int, int]) -> None:
        """UnprocessableData (422) when decoded `x` has more rows or columns than configured."""
        rows, columns = shape
        for count, what, limit in ((rows, "rows", "max_rows"), (columns, "columns", "max_columns")):
            if count > getattr(self.settings, limit):
                raise UnprocessableData(
                    f"x has {count} {what}; this server takes at most "
                    f"{getattr(self.settings, limit)} ({limit})"
                )

    @staticmethod
    def _serializer_for(wrapper: ModelWrapper, version: Version) -> Serializer:
        own = wrapper.get_serializer()
        if version.serializer in (None, own.name):
            return own
        return resolve_serializer(version.serializer)

    def _metadata(
        self,
        wrapper: ModelWrapper,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None,
        schema: Schema,
    ) -> dict[str, Any]:
        if y is None:
            targets: list[Any] = []
        elif isinstance(y, pd.Series):
            targets = [DEFAULT_TARGET if y.name is None else y.name]
        else:
            targets = list(y.columns)
        return {
            "rows": len(x),
            "n_features": x.shape[1],
            "features": schema.to_json(),
            "targets": targets,
            "libraries": {**self._libraries, **wrapper.get_serializer().library_versions()},
        }


def _method(wrapper: ModelWrapper, method: Any) -> str | None:
    """The method a client asked for (None: not given), if the wrapper offers it at all."""
    if method is None:
        return None
    if not isinstance(method, str) or method not in wrapper.methods:
        raise InvalidPayload(
            f"method must be one of {', '.join(wrapper.methods)}; got {method!r}", "method"
        )
    return method


def _offered(wrapper: ModelWrapper, model: Any) -> tuple[str, ...]:
    """The wrapper's methods this fitted model can run. A wrapper that computes a method
    itself (its own `predict` or `apply`) offers it whatever the model has."""
    kind = type(wrapper)
    own_apply = kind.apply is not ModelWrapper.apply
    own_predict = kind.predict is not ModelWrapper.predict
    return tuple(
        m
        for m in wrapper.methods
        if own_apply or (m == "predict" and own_predict) or has_method(model, m)
    )


def _chosen(loaded: _Loaded, asked: str | None, served: tuple[str, ...], what: str) -> str:
    """The method to run: the one asked for if the model has it; without one, `predict`,
    else the model's only method; InvalidPayload (400) naming what the model has."""
    offered = loaded.offered
    if asked is not None and asked in offered:
        return asked
    if asked is None:
        if "predict" in offered:
            return "predict"
        if len(offered) == 1:
            return offered[0]
    if not offered:
        raise InvalidPayload(
            f"{what} ({type(loaded.model).__name__}) has none of the methods this server "
            f"serves ({', '.join(served)}): there is nothing to predict with",
            "method",
        )
    missing = f"has no method {asked!r}" if asked is not None else "has no predict: give method"
    raise InvalidPayload(f"{what} {missing}; available: {', '.join(offered)}", "method")


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _output_names(model: Any, method: str, ndim: int, targets: tuple[Any, ...]) -> list[Any]:
    """Names of a method's output columns: the training targets for predict, class labels
    for probabilities and scores, the transformer's feature names for transform."""
    if method == "predict":
        return list(targets)
    classes = getattr(model, "classes_", None)
    if method in ("predict_proba", "decision_function") and classes is not None:
        labels = np.asarray(classes).tolist()
        # A binary decision_function is 1-d: the score of the positive (last) class.
        return labels[-1:] if ndim == 1 else labels
    names = getattr(model, "get_feature_names_out", None)
    if method == "transform" and callable(names):
        try:
            return np.asarray(names()).tolist()
        except (AttributeError, ValueError, TypeError):  # not every transformer can name them
            return []
    return []


def _calls_model(wrapper: ModelWrapper, method: str) -> bool:
    """The wrapper runs `method` as `model.<method>(x)`, as ModelWrapper does by default."""
    kind = type(wrapper)
    if kind.apply is not ModelWrapper.apply:
        return False
    return method != "predict" or kind.predict is ModelWrapper.predict


def _output(
    raw: Any,
    rows: int,
    model: Any,
    method: str,
    targets: tuple[Any, ...],
    settings: Settings,
) -> pd.DataFrame | tuple[np.ndarray, list[Any]]:
    """A method's output as a frame (when the wrapper gave one) or as a 2-d array and one
    name per column. Sparse output (OneHotEncoder's default) is made dense up to
    `max_output_cells`."""
    if isinstance(raw, pd.DataFrame) and len(raw) == rows:
        return raw
    if _is_sparse(raw):
        cells = raw.shape[0] * raw.shape[1]
        if cells > settings.max_output_cells:
            raise UnprocessableData(
                f"the model returned sparse output of {raw.shape[0]} x {raw.shape[1]}; "
                f"this server answers at most {settings.max_output_cells} cells "
                "(max_output_cells): send fewer rows"
            )
        raw = raw.toarray()
    values = np.asarray(raw.to_numpy() if isinstance(raw, pd.Series) else raw)
    if values.ndim not in (1, 2) or len(values) != rows:
        raise UnprocessableData(
            f"the model returned output of shape {values.shape} for {rows} rows of x"
        )
    names = _output_names(model, method, values.ndim, targets)
    if values.ndim == 1:
        return values[:, None], [names[0] if len(names) == 1 else DEFAULT_TARGET]
    width = values.shape[1]
    return values, names if len(names) == width else list(range(width))


def _is_sparse(value: Any) -> bool:
    # NOTE: scipy is a dependency of scikit-learn; checked by attribute so no import is paid.
    return hasattr(value, "toarray") and hasattr(value, "nnz") and hasattr(value, "shape")


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _orient(orient: Any) -> str:
    if orient is None:
        return "columns"
    if orient not in ORIENTS:
        raise InvalidPayload(
            f"orient must be one of {', '.join(ORIENTS)}; got {orient!r}", "orient"
        )
    return orient


def _key(key: Any) -> str:
    if key is None or key == "":
        raise InvalidPayload("missing parameter 'model-key'", "model-key")
    if not isinstance(key, str):
        raise InvalidPayload("model-key must be a string", "model-key")
    if "\x00" in key:
        # NOTE: PostgreSQL text cannot hold NUL; no stored key has one on any backend.
        raise InvalidPayload("model-key must not contain NUL characters", "model-key")
    return key


def _kwargs(value: Any, parameter: str) -> dict[str, Any]:
    """A kwargs object; JSON text of an object is accepted as the original clients sent it."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidPayload(f"{parameter} must be a JSON object", parameter) from None
    if not isinstance(value, dict):
        raise InvalidPayload(f"{parameter} must be a JSON object", parameter)
    return value


def _flag(value: Any, parameter: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidPayload(f"{parameter} must be true or false, got {value!r}", parameter)
