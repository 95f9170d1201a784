"""Training jobs: fit or update on an executor, record the outcome through the store.

The work itself is `mlserver.training.train`, a pure function of its task that runs on a
thread pool, a process pool or a Dask cluster alike. Recording and lease heartbeats stay here,
in the server process, which owns the claim.

Jobs wait in this process until the executor has a free slot (`max_queued_jobs` bounds how many
may wait); a job's `training_timeout_seconds` count from when it gets one. A job that times out
is FAILED at once and its outcome, if it ever comes, is discarded. Its work is stopped where the
executor can stop it: `ProcessPool` kills the process, Dask cancels the task (a task a worker
already runs goes on in its thread until it returns, as Dask cannot interrupt it), a thread
pool cannot stop a thread (it runs until the fit returns, and keeps its slot until then).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlserver.cluster import for_cluster
from mlserver.config import Settings
from mlserver.errors import Overloaded, StoreError
from mlserver.inputs import Inputs, record
from mlserver.job_places import JobOutcome, Place
from mlserver.leases import is_dead, worker_id
from mlserver.pool import executor_slots
from mlserver.signing import Placement, Signer
from mlserver.store.base import Status, Store, Version
from mlserver.training import TrainingTask, describe, train

# NOTE: TrainingTask is listed for the service, which builds the tasks it submits here.
__all__ = ["JobOutcome", "Jobs", "TrainingTask"]

log = logging.getLogger("mlserver.jobs")

#: Seconds a refused PUT or PATCH is told to wait (Retry-After): a few, since a slot frees
#: whenever any job of this process ends, and a client retrying sooner only gets another 503.
RETRY_AFTER_SECONDS = 5


@dataclass(eq=False)
class _Job:
    """One submitted job: queued, then running, then done, timed out or abandoned."""

    version: Version
    task: TrainingTask
    kind: str
    metadata: Mapping[str, Any]
    #: Whether the version becomes `served` when it finishes (see Store.finish).
    promote: str = "always"
    state: str = "queued"
    future: Future | None = None
    timer: threading.Timer | None = None
    #: Its inputs being recorded (see mlserver.inputs); finish waits for them.
    recording: Future | None = None


class Jobs:
    """Submits training tasks, times them out, and keeps this process's claims alive.

    A daemon thread renews the lease of every version this worker runs and marks versions of
    dead workers (lease expired, or a process on this host that no longer exists) FAILED; it
    starts with `start`, not at construction, so building Jobs does no I/O.
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
        #: Versions submitted and not yet recorded (nor timed out, nor abandoned).
        self._running: set[int] = set()
        #: Jobs waiting for a slot, and jobs on the executor (timed-out ones until they return).
        self._queued: deque[_Job] = deque()
        self._active: dict[int, _Job] = {}
        #: Places held by requests between their check and their claim (see `reserve`).
        self._reserved = 0
        self._slots = executor_slots(executor)
        self._closing = False
        #: Jobs `close` abandoned to the lease rules.
        self.left = 0
        #: Failures the store did not take; the heartbeat thread records them again.
        self._unrecorded: dict[int, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        #: The heartbeat thread, once `start` has run; building Jobs touches no store.
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        #: Records jobs' inputs beside their training (one thread: a dataset at a time).
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="mlserver-inputs")
        #: Runs a lost job again (set by the service, which can rebuild its task); called
        #: with the adopted version and a reserved place, it submits the job or fails it.
        self.rerun: Callable[[Version, Place], None] | None = None

    @property
    def started(self) -> bool:
        """Whether `start` has run (the first sweep is done, the heartbeat thread runs)."""
        return self._thread is not None

    def start(self) -> None:
        """Sweep once, then start the heartbeat thread; called when the server starts serving.

        Idempotent and thread-safe: concurrent first requests sweep once. A store that does
        not answer is logged, not raised (the heartbeat sweeps again). After `close` it does
        nothing.
        """
        with self._starting:
            if self._thread is not None or self._stop.is_set():
                return
            try:
                self.sweep()  # a restarted process fails its own orphans at once
            except StoreError as exc:
                log.warning("event=sweep_failed error=%r", str(exc))
            thread = threading.Thread(target=self._maintain, name="mlserver-heartbeat", daemon=True)
            thread.start()
            self._thread = thread

    def reserve(self) -> Place:
        """A place for one job, held (by the returned context manager) while its version is
        claimed and submitted.

        Raises:
            Overloaded: `max_queued_jobs` jobs wait already (or the server is closing), so
                nothing may be claimed. The check and the place are taken under one lock, so
                concurrent requests cannot all pass it.
        """
        if self._thread is None:  # used without an app (a Service of its own): no job
            self.start()  # runs without its heartbeat
        return self._reserve()

    def _reserve(self, limit: int | None = None) -> Place:
        limit = self.settings.max_queued_jobs if limit is None else limit
        with self._lock:
            if self._closing:
                raise Overloaded("the server is shutting down", RETRY_AFTER_SECONDS)
            waiting = len(self._queued) + self._reserved
            if self._slots is None:  # NOTE: Dask: every job not yet ended counts
                beyond = waiting + len(self._active) - limit
                what = "training jobs are on the cluster"
            else:
                beyond = waiting - (self._slots - len(self._active)) - limit
                what = "training jobs wait for a slot"
            if beyond >= 0:
                raise Overloaded(
                    f"{limit + beyond} {what} already (max_queued_jobs={limit}); "
                    "nothing was stored, send it again later",
                    RETRY_AFTER_SECONDS,
                )
            self._reserved += 1
        return Place(self._release)

    def _release(self) -> None:
        with self._lock:
            self._reserved -= 1

    def submit(
        self,
        version: Version,
        task: TrainingTask,
        metadata: Mapping[str, Any],
        place: Place | None = None,
        *,
        promote: str = "always",
        inputs: Inputs | None = None,
    ) -> None:
        """Run `task` for the claimed `version` when a slot is free; its outcome is recorded
        when it ends (and, by `promote`, made `served` or not). The job takes over `place`
        (from `reserve`) in the same step, so it is never counted twice, as reserved and as
        queued. `inputs` are recorded meanwhile, before the outcome."""
        kind = "fit" if task.base_blob is None else "update"
        job = _Job(version, task, kind, metadata, promote)
        if inputs is not None:
            with contextlib.suppress(RuntimeError):  # closing: the job is FAILED anyway
                job.recording = self._recorder.submit(self._record_inputs, version, inputs)
        with self._lock:
            if place is not None and place.take():
                self._reserved -= 1
            self._running.add(version.id)
            self._queued.append(job)
        self._dispatch()

    def _record_inputs(self, version: Version, inputs: Inputs) -> None:
        started = time.perf_counter()
        try:
            data = record(self.store, self.settings, version, inputs)
        except Exception:  # the job trains on: only its lineage is missing
            log.exception(
                "event=inputs_unrecorded model=%s key=%s version=%d",
                version.model,
                version.key,
                version.version,
            )
            return
        log.info(
            "event=inputs_recorded model=%s key=%s version=%d data=%s seconds=%.3f",
            version.model,
            version.key,
            version.version,
            data or "not-stored",
            time.perf_counter() - started,
        )

    def cancel(self, version_id: int) -> bool:
        """Drop the job of a version the store has cancelled, if this process runs it: a
        queued one never starts, a running one is stopped where its executor can stop it
        (see the module docstring). Its outcome is discarded either way; the store refuses
        to finish a cancelled version in any case. True if this process had the job."""
        with self._lock:
            job = next((j for j in self._queued if j.version.id == version_id), None)
            if job is not None:
                self._queued.remove(job)
            else:
                job = self._active.get(version_id)
                if job is None or job.state != "running":
                    return False
            job.state = "cancelled"
            self._running.discard(version_id)
            self._changed.notify_all()
        if job.timer is not None:
            job.timer.cancel()
        stopped = self._stop_work(job) if job.future is not None else True
        log.info(
            "event=job_cancelled model=%s key=%s version=%d stopped=%s",
            job.version.model,
            job.version.key,
            job.version.version,
            "yes" if stopped else "no: it runs until it returns, its outcome is discarded",
        )
        self._tell(JobOutcome(job.version.model, job.kind, "cancelled"))
        return True

    @property
    def running(self) -> int:
        """Jobs of this process not yet recorded (queued or running; not timed out)."""
        with self._lock:
            return len(self._running)

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot."""
        with self._lock:
            return len(self._queued)

    @property
    def busy(self) -> int:
        """Jobs on the executor, timed-out ones included until their work returns."""
        with self._lock:
            return len(self._active)

    def _dispatch(self) -> None:
        """Hand queued jobs to the executor while it has free slots."""
        while True:
            with self._lock:
                if not self._queued or self._closing:
                    return
                if self._slots is not None and len(self._active) >= self._slots:
                    return
                job = self._queued.popleft()
                job.state = "running"
                self._active[job.version.id] = job
                # The timeout counts from here: the job has a slot of its own.
                job.timer = threading.Timer(
                    self.settings.training_timeout_seconds, self._time_out, args=(job,)
                )
                job.timer.daemon = True
                job.timer.name = f"mlserver-timeout-{job.version.id}"
                job.timer.start()
            try:
                future = self.executor.submit(train, job.task)
            except Exception as exc:  # e.g. executor shut down: the claim must not stay RUNNING
                with self._lock:
                    self._active.pop(job.version.id, None)
                    job.state = "done"
                job.timer.cancel()
                self._record_failure(job.version, job.kind, exc)
                continue
            job.future = future
            future.add_done_callback(lambda done, job=job: self._done(job, done))

    def _done(self, job: _Job, future: Future) -> None:
        """The executor gave the job back: its slot is free; record it unless it timed out."""
        with self._lock:
            self._active.pop(job.version.id, None)
            state = job.state
            if state == "running":
                job.state = "done"
        if job.timer is not None:
            job.timer.cancel()
        self._dispatch()
        if state == "running":
            self._record(job, future)
        else:
            log.info(
                "event=job_outcome_discarded model=%s key=%s version=%d reason=%s",
                job.version.model,
                job.version.key,
                job.version.version,
                state,
            )

    def _time_out(self, job: _Job) -> None:
        """The job ran for `training_timeout_seconds`: FAILED now, its work stopped if it can
        be, its outcome discarded whenever it comes."""
        with self._lock:
            if job.state != "running":
                return
            job.state = "timed_out"
        seconds = self.settings.training_timeout_seconds
        error = f"timed out after {seconds:g} s (training_timeout_seconds={seconds:g})"
        self._fail(job.version, error)  # FAILED before the work stops, so nothing else wins
        stopped = self._stop_work(job)
        log.warning(
            "event=job_timed_out model=%s key=%s version=%d seconds=%g stopped=%s busy=%d",
            job.version.model,
            job.version.key,
            job.version.version,
            seconds,
            "yes" if stopped else "no: it runs until it returns, its outcome is discarded",
            self.busy,
        )
        self._tell(JobOutcome(job.version.model, job.kind, "timed_out"))

    def _stop_work(self, job: _Job) -> bool:
        """Stop a job's work where its executor can; True if it did (or will not start)."""
        future = job.future
        if future is None:
            return False
        terminate = getattr(self.executor, "terminate", None)
        if callable(terminate):  # ProcessPool: kills the job's process
            return bool(terminate(future))
        # NOTE: on Dask this cancels the task on the cluster (a worker already running it
        # goes on until it returns); on a thread or stdlib process pool a running job cannot
        # be cancelled and this is False.
        return future.cancel()

    def _record(self, job: _Job, future: Future) -> None:
        version, kind, metadata = job.version, job.kind, job.metadata
        try:
            artifact = future.result()
        except BaseException as exc:
            self._record_failure(version, kind, exc)
            return
        if job.recording is not None:
            with contextlib.suppress(CancelledError):  # so a finished version has its lineage
                job.recording.result()
        try:
            signature = None
            artifact = dataclasses.replace(artifact, metadata={**metadata, **artifact.metadata})
            if self.signer is not None:
                where = Placement.of(version, artifact.serializer, artifact.metadata)
                signature = self.signer.sign(artifact.blob, where)
            # NOTE: finish writes only a RUNNING row: a version FAILED meanwhile (timed out,
            # interrupted) or deleted stays as it is, and this is "discarded".
            stored = self.store.finish(
                version.id,
                artifact,
                signature,
                promote=job.promote,
                keep_versions=self.settings.keep_versions,
            )
        except Exception as exc:
            self._record_failure(version, kind, exc)
            return
        if stored and self._on_finished is not None:
            self._on_finished(version)
        self._forget(version.id)  # only now is the job fully recorded (see `running`)
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
        self._fail(version, describe(exc))
        self._tell(JobOutcome(version.model, kind, "failed"))

    def _fail(self, version: Version, error: str) -> None:
        """Mark the version FAILED; a store that does not answer gets it again later."""
        try:
            self.store.fail(version.id, error)
        except StoreError:
            log.exception("event=job_fail_unrecorded version_id=%d", version.id)
            with self._lock:
                self._unrecorded[version.id] = error
        finally:
            self._forget(version.id)

    def _forget(self, version_id: int) -> None:
        with self._lock:
            self._running.discard(version_id)
            self._changed.notify_all()

    def _tell(self, outcome: JobOutcome) -> None:
        for observer in list(self.observers):
            try:
                observer(outcome)
            except Exception:  # an observer must never break the job's own bookkeeping
                log.exception("event=job_observer_failed observer=%r", observer)

    def sweep(self) -> int:
        """Run again the lost jobs whose inputs are stored (while this process has room),
        and mark the other versions of dead workers FAILED ("interrupted"); returns how
        many were marked."""
        dead = tuple(w for w in self.store.running_workers() if is_dead(w))
        attempts = self.settings.max_attempts if self.rerun is not None else 1
        if self.rerun is not None and not self._closing:
            self._adopt(dead)
        expired = self.store.expire(dead_workers=dead, max_attempts=attempts)
        if expired:
            log.warning("event=interrupted_jobs_marked count=%d", expired)
        return expired

    def _adopt(self, dead: tuple[str, ...]) -> None:
        """Take over lost jobs that can run again, one per free place, leaving half the
        queue to new requests (the rest wait for a later sweep, or another process)."""
        for lost in self.store.lost(dead_workers=dead, max_attempts=self.settings.max_attempts):
            try:
                place = self._reserve(self.settings.max_queued_jobs // 2)
            except Overloaded:
                return  # no room here: another process (or a later sweep) takes them
            with place:
                adopted = self.store.adopt(
                    lost.id,
                    worker=self.worker,
                    lease_seconds=self.settings.lease_seconds,
                    dead_workers=dead,
                )
                if adopted is None:
                    continue  # another process took it first
                log.warning(
                    "event=job_run_again model=%s key=%s version=%d attempt=%d",
                    adopted.model,
                    adopted.key,
                    adopted.version,
                    adopted.attempts,
                )
                assert self.rerun is not None
                self.rerun(adopted, place)

    def _maintain(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                with self._lock:
                    unrecorded = dict(self._unrecorded)
                for version_id, error in unrecorded.items():
                    self.store.fail(version_id, error)
                    with self._lock:
                        self._unrecorded.pop(version_id, None)
                if self.running or unrecorded:
                    renewed = self.store.heartbeat(self.worker, self.settings.lease_seconds)
                    if renewed < self.running:
                        self._drop_lost()
                self.sweep()
            except StoreError:
                log.exception("event=heartbeat_failed")

    def _drop_lost(self) -> None:
        """Stop the jobs whose versions are no longer RUNNING in the store: cancelled (or
        deleted) through another process sharing it."""
        with self._lock:
            mine = [job.version for job in (*self._queued, *self._active.values())]
        for version in mine:
            now = self.store.version(version.model, version.key, version.version)
            if now is None or now.id != version.id or now.status is not Status.RUNNING:
                self.cancel(version.id)

    def close(self, timeout: float | None = None) -> int:
        """Take no more jobs, FAIL the queued ones (cancelled), wait for the running ones (at
        most `timeout` seconds, if given), then stop the heartbeat.

        Jobs still running then are abandoned: their work is stopped where the executor can
        stop it, their outcome is not recorded, and their versions stay RUNNING until the
        lease rules take them (FAILED "interrupted" by a live process). Returns how many.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closing = True
            queued = list(self._queued)
            self._queued.clear()
        for job in queued:
            job.state = "done"
            self._record_failure(job.version, job.kind, CancelledError())
        with self._lock:
            while self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining)
            left = [job for job in self._active.values() if job.state == "running"]
            for job in left:
                job.state = "abandoned"
                self._running.discard(job.version.id)
        for job in left:
            if job.timer is not None:
                job.timer.cancel()
            self._stop_work(job)
            log.warning(
                "event=job_abandoned model=%s key=%s version=%d detail=%r",
                job.version.model,
                job.version.key,
                job.version.version,
                "left RUNNING for the lease rules",
            )
        # NOTE: a recording under way ends first (it is one bounded write): the store it
        # writes to may be closed right after this returns.
        self._recorder.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        with self._starting:  # a `start` under way has its thread by now; a later one is a no-op
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        self.left = len(left)
        return self.left
