"""One training job as a pure function: fit (or update), serialize, verify, describe a failure.

`train` needs no store and no HTTP, so the same code runs on a thread pool, a process pool or
a Dask cluster; `TrainingTask` and `Artifact` are what travels there and back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.base import is_classifier

from mlserver import scoring
from mlserver.serializers.base import Serializer
from mlserver.store.base import Artifact
from mlserver.wrapper import ModelWrapper

__all__ = ["TrainingTask", "describe", "train"]

_MAX_ERROR = 4000

# NOTE: Dask's scheduler raises this when it cannot unpickle a job; the cause (e.g. the missing
# module) stays in the scheduler's log. mlserver's own Dask submissions never reach it (see
# cluster.py), but a job submitted by other means can.
_DASK_GRAPH_ERROR = "Error during deserialization of the task graph"
_DASK_SCHEDULER_CANNOT_UNPICKLE = (
    'the Dask scheduler could not unpickle the job (Dask: "Error during deserialization of the '
    "task graph\"): a module the job refers to is missing there (the scheduler's log names it): "
    "install it on the scheduler, with the same Python and Dask versions as the server"
)


@dataclass(frozen=True)
class TrainingTask:
    """Everything a fit or update needs; picklable so it can travel to another process."""

    wrapper: ModelWrapper
    x: pd.DataFrame
    y: pd.Series | pd.DataFrame | None
    model: Any = None  # a fresh model from make_model, for fit
    base_blob: bytes | None = None  # the version to update, for update
    algkwargs: Mapping[str, Any] = field(default_factory=dict)
    schema: Any = None
    base_serializer: Serializer | None = None  # what base_blob was written with (default: own)
    #: Fit: the share of rows held out and scored (None: fit on every row).
    validation: float | None = None
    #: A scikit-learn scorer name for validation and prequential scores (None: the model's
    #: own `score`).
    scoring: str | None = None
    #: Seeds the held-out split, so that it is the same for the same key.
    seed: int = 0
    #: Update: score the base on the new rows before it learns from them (prequential).
    prequential: bool = False
    #: Refit: the (x, y) of each update of the history replayed, in order, after the fit.
    updates: tuple[tuple[pd.DataFrame, pd.Series | pd.DataFrame | None], ...] = ()


def train(task: TrainingTask) -> Artifact:
    """Fit (or update) and serialize; any exception is the job's failure.

    With `task.validation` a fit holds out that share of the rows (seeded by `task.seed`,
    stratified for classifiers), learns from the rest and scores the held-out rows:
    `metrics["validation"]`, and `metadata["validation_rows"]` = `{"fitted", "held_out"}`.
    With `task.prequential`, an update with a y first scores the base on the new rows:
    `metrics["prequential"]`. Without either, metrics are {} and metadata as before. A
    refit's `task.updates` are applied after the fit, as its history applied them.
    """
    wrapper = task.wrapper
    serializer = wrapper.get_serializer()
    x, y = task.x, task.y
    metrics: dict[str, Any] = {}
    held: tuple[Any, Any] | None = None
    started = time.perf_counter()
    # A fit or update that returns None changed the model in place, as sklearn's do.
    if task.base_blob is None:
        if task.validation is not None:
            stratify = is_classifier(task.model)
            x, y, x_held, y_held = scoring.holdout(
                task.x, task.y, task.validation, task.seed, stratify
            )
            held = (x_held, y_held)
            started = time.perf_counter()
        fitted = wrapper.fit(task.model, x, y, **task.algkwargs)
        fitted = task.model if fitted is None else fitted
        for x_update, y_update in task.updates:  # a refit replays its history's updates
            updated = wrapper.update(fitted, x_update, y_update)
            fitted = fitted if updated is None else updated
    else:
        base = (task.base_serializer or serializer).loads_for_update(task.base_blob)
        if task.prequential and y is not None:
            # NOTE: before the update, which may change the base in place.
            metrics["prequential"] = scoring.score(base, x, y, task.scoring)
            started = time.perf_counter()
        fitted = wrapper.update(base, x, y)
        fitted = base if fitted is None else fitted
    seconds = time.perf_counter() - started
    if held is not None:
        metrics["validation"] = scoring.score(fitted, held[0], held[1], task.scoring)
    blob = serializer.dumps(fitted, task.schema)
    serializer.verify(fitted, blob, x)  # e.g. ONNX: same answers on the rows it learnt from
    metadata: dict[str, Any] = {
        "training_seconds": round(seconds, 6),
        "serialized_bytes": len(blob),
        "user": dict(wrapper.metadata(fitted, x, y) or {}),
    }
    if held is not None:
        metadata["validation_rows"] = {"fitted": len(x), "held_out": len(held[0])}
    return Artifact(
        blob=blob,
        sha256=hashlib.sha256(blob).hexdigest(),
        serializer=serializer.name,
        metadata=metadata,
        metrics=metrics,
    )


def describe(exc: BaseException) -> str:
    """The error text stored with a FAILED version: type and message, bounded."""
    if isinstance(exc, CancelledError):
        # NOTE: not only a shutdown: a Dask client cancels running jobs when it loses its
        # scheduler, and the reason does not reach this future.
        return (
            "cancelled: the server shut down before the job started, or the executor dropped "
            "it (e.g. its Dask scheduler went away)"
        )
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RuntimeError) and str(exc).startswith(_DASK_GRAPH_ERROR):
        text = _DASK_SCHEDULER_CANNOT_UNPICKLE
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
