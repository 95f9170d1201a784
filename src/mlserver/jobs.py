"""Training jobs: fit or update on an executor, record the outcome through the store.

`train` is a pure function of its task (no store, no HTTP), so the same code runs on a thread
pool, a process pool or a Dask cluster. Recording and lease heartbeats stay in the server
process, which owns the claim.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlserver.cluster import for_cluster
from mlserver.config import Settings
from mlserver.errors import StoreError
from mlserver.serializers.base import Serializer
from mlserver.signing import Signer
from mlserver.store.base import Store, Version
from mlserver.wrapper import ModelWrapper

__all__ = ["Artifact", "JobOutcome", "Jobs", "TrainingTask", "train", "worker_id"]

log = logging.getLogger("mlserver.jobs")

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


@dataclass(frozen=True)
class Artifact:
    """A fitted model as bytes, ready for `Store.finish`."""

    blob: bytes
    sha256: str
    serializer: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job, told to `Jobs.observers` (e.g. metrics) once it is recorded."""

    model: str
    kind: str  # "fit" or "update"
    outcome: str  # "finished", "failed" or "discarded" (its key was deleted meanwhile)
    training_seconds: float | None = None  # of a finished job


def train(task: TrainingTask) -> Artifact:
    """Fit (or update) and serialize; any exception is the job's failure."""
    wrapper = task.wrapper
    serializer = wrapper.get_serializer()
    started = time.perf_counter()
    # A fit or update that returns None changed the model in place, as sklearn's do.
    if task.base_blob is None:
        fitted = wrapper.fit(task.model, task.x, task.y, **task.algkwargs)
        fitted = task.model if fitted is None else fitted
    else:
        base = (task.base_serializer or serializer).loads_for_update(task.base_blob)
        fitted = wrapper.update(base, task.x, task.y)
        fitted = base if fitted is None else fitted
    seconds = time.perf_counter() - started
    blob = serializer.dumps(fitted, task.schema)
    return Artifact(
        blob=blob,
        sha256=hashlib.sha256(blob).hexdigest(),
        serializer=serializer.name,
        metadata={
            "training_seconds": round(seconds, 6),
            "serialized_bytes": len(blob),
            "user": dict(wrapper.metadata(fitted, task.x, task.y) or {}),
        },
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


def worker_id() -> str:
    """host:pid-namespace:pid:nonce; enough to tell, on the same host, whether it is alive."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _is_dead(worker: str) -> bool:
    """True only when the worker is certainly gone: same host and PID namespace, no process."""
    host, _, rest = worker.partition(":")
    namespace, _, rest = rest.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Jobs:
    """Submits training tasks and keeps this process's claims alive.

    A daemon thread renews the lease of every version this worker runs and marks versions of
    dead workers (lease expired, or a process on this host that no longer exists) FAILED.
    """

    def __init__(
        self,
        store: Store,
        executor: Executor,
        settings: Settings,
        on_finished: Callable[[Version], None] | None = None,
        *,
        signer: Signer | None = None,
    ) -> None:
        self.store = store
        self._on_finished = on_finished
        # NOTE: a Dask executor is wrapped so that its scheduler never unpickles a job.
        self.executor = for_cluster(executor)
        self.settings = settings
        #: Signs each blob before it is stored, in this process: the secret never travels.
        self.signer = signer
        #: Called with a JobOutcome after each job is recorded; an observer's error is logged.
        self.observers: list[Callable[[JobOutcome], None]] = []
        self.worker = worker_id()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        try:
            self.sweep()  # a restarted process fails its own orphans at once
        except StoreError as exc:
            log.warning("event=sweep_failed error=%r", str(exc))
        self._thread = threading.Thread(
            target=self._maintain, name="mlserver-heartbeat", daemon=True
        )
        self._thread.start()

    def submit(self, version: Version, task: TrainingTask, metadata: Mapping[str, Any]) -> Future:
        """Run `task` for the claimed `version`; its outcome is recorded when it ends."""
        kind = "fit" if task.base_blob is None else "update"
        with self._lock:
            self._running.add(version.id)
        try:
            future = self.executor.submit(train, task)
        except Exception as exc:  # e.g. executor shut down: the claim must not stay RUNNING
            self._record_failure(version, kind, exc)
            raise
        future.add_done_callback(lambda done: self._record(version, kind, metadata, done))
        return future

    @property
    def running(self) -> int:
        """Jobs of this process not yet recorded."""
        with self._lock:
            return len(self._running)

    def _record(
        self, version: Version, kind: str, metadata: Mapping[str, Any], future: Future
    ) -> None:
        try:
            artifact = future.result()
        except BaseException as exc:
            self._record_failure(version, kind, exc)
            return
        try:
            signature = None
            if self.signer is not None:
                signature = self.signer.sign(
                    artifact.blob,
                    model=version.model,
                    key=version.key,
                    version=version.version,
                    serializer=artifact.serializer,
                )
            stored = self.store.finish(
                version.id,
                blob=artifact.blob,
                sha256=artifact.sha256,
                serializer=artifact.serializer,
                metadata={**metadata, **artifact.metadata},
                signature=signature,
            )
        except Exception as exc:
            self._record_failure(version, kind, exc)
            return
        if stored and self._on_finished is not None:
            self._on_finished(version)
        with self._lock:  # only now is the job fully recorded (see `running`)
            self._running.discard(version.id)
        log.info(
            "event=%s model=%s key=%s version=%d seconds=%s",
            "job_finished" if stored else "job_discarded",
            version.model,
            version.key,
            version.version,
            artifact.metadata.get("training_seconds"),
        )
        seconds = artifact.metadata.get("training_seconds") if stored else None
        self._tell(JobOutcome(version.model, kind, "finished" if stored else "discarded", seconds))

    def _record_failure(self, version: Version, kind: str, exc: BaseException) -> None:
        log.info(
            "event=job_failed model=%s key=%s version=%d error=%r",
            version.model,
            version.key,
            version.version,
            describe(exc),
        )
        try:
            self.store.fail(version.id, describe(exc))
        except StoreError:
            # The lease runs out and any live process marks the version interrupted.
            log.exception("event=job_fail_unrecorded version_id=%d", version.id)
        finally:
            with self._lock:
                self._running.discard(version.id)
        self._tell(JobOutcome(version.model, kind, "failed"))

    def _tell(self, outcome: JobOutcome) -> None:
        for observer in list(self.observers):
            try:
                observer(outcome)
            except Exception:  # an observer must never break the job's own bookkeeping
                log.exception("event=job_observer_failed observer=%r", observer)

    def sweep(self) -> int:
        """Mark versions of dead workers FAILED ("interrupted"); returns how many."""
        dead = tuple(w for w in self.store.running_workers() if _is_dead(w))
        expired = self.store.expire(dead_workers=dead)
        if expired:
            log.warning("event=interrupted_jobs_marked count=%d", expired)
        return expired

    def _maintain(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                if self.running:
                    self.store.heartbeat(self.worker, self.settings.lease_seconds)
                self.sweep()
            except StoreError:
                log.exception("event=heartbeat_failed")

    def close(self) -> None:
        """Stop the heartbeat; jobs still running lose their lease and end up interrupted."""
        self._stop.set()
        self._thread.join(timeout=5)
