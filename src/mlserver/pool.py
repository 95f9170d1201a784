"""A process pool whose running jobs can be stopped: the executor of `--executor process`.

`concurrent.futures.ProcessPoolExecutor` cannot cancel a task once it runs, and killing one of
its processes breaks the whole pool (every other job fails with BrokenProcessPool). Here each
process runs one job at a time on its own pipe, so `terminate(future)` kills exactly the
process running that job; the next job starts a fresh one.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["ProcessPool", "executor_slots"]

log = logging.getLogger("mlserver.pool")


def _work(conn: Connection, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A pool process: run each call that arrives on `conn`, send back its outcome."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except EOFError:  # the server closed the pipe: the pool shut down
            return
        try:
            outcome = (True, fn(*args, **kwargs))
        except BaseException as exc:  # the job's failure, told to the server
            outcome = (False, exc)
        try:
            conn.send(outcome)
        except Exception as exc:  # an outcome that does not pickle
            conn.send((False, RuntimeError(f"cannot send the job's outcome back: {exc!r}")))


def _end_processes(pool: weakref.ref) -> None:
    """At exit: kill the pool's processes that are still alive."""
    alive = pool()
    if alive is None:
        return
    with alive._lock:
        alive._shutdown = True
        for slot in alive._slots:
            if slot.process is not None and slot.process.is_alive():
                slot.process.kill()


class _Slot:
    """One process and the future it is working on."""

    def __init__(self) -> None:
        self.process: Any = None
        self.conn: Connection | None = None
        self.future: Future | None = None


class ProcessPool(Executor):
    """`workers` spawned processes, each running one job at a time; `terminate` stops one.

    NOTE: spawn, not fork: the server forks from a process with running threads (waitress,
    heartbeat, database pool), which can deadlock a child on a lock held at fork time.
    Processes start when a job needs one, so an idle pool costs nothing.
    """

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[..., None] | None = None,
        initargs: tuple = (),
    ) -> None:
        self.workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._initializer = initializer
        self._initargs = initargs
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._slots = [_Slot() for _ in range(workers)]
        self._threads = [
            threading.Thread(target=self._run, args=(slot,), name=f"mlserver-pool-{i}", daemon=True)
            for i, slot in enumerate(self._slots)
        ]
        for thread in self._threads:
            thread.start()
        # NOTE: at interpreter exit multiprocessing joins every child that is not daemonic
        # (ours are not, so fits may start processes of their own): end them first.
        atexit.register(_end_processes, weakref.ref(self))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` in a pool process; everything must pickle."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future = Future()
            self._queue.put((future, fn, args, kwargs))
        return future

    def terminate(self, future: Future) -> bool:
        """Stop `future`'s job: cancelled if it waits, its process killed if it runs (the
        future then fails with ChildProcessError). False if it is not this pool's or done."""
        if future.cancel():
            return True
        with self._lock:
            for slot in self._slots:
                if slot.future is future and slot.process is not None:
                    slot.process.kill()
                    return True
        return False

    @property
    def pids(self) -> list[int]:
        """Process ids of the pool's live processes."""
        with self._lock:
            return [s.process.pid for s in self._slots if s.process and s.process.is_alive()]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new jobs; with `cancel_futures` drop those not started. With `wait`, wait
        for running jobs; without, kill the processes still running one."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                for _ in self._slots:
                    self._queue.put(None)
        if cancel_futures:
            self._cancel_waiting()
        if not wait:
            with self._lock:
                for slot in self._slots:
                    if slot.future is not None and slot.process is not None:
                        slot.process.kill()
        for thread in self._threads:
            thread.join()

    def _cancel_waiting(self) -> None:
        pending = []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            if item is None:
                self._queue.put(None)
            else:
                item[0].cancel()

    def _run(self, slot: _Slot) -> None:
        """One slot's thread: hand it each job in turn, and end its process at shutdown."""
        while True:
            item = self._queue.get()
            if item is None:
                break
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                self._call(slot, future, fn, args, kwargs)
            finally:
                with self._lock:
                    slot.future = None
        if slot.conn is not None:
            slot.conn.close()  # the process ends when its pipe closes
        if slot.process is not None:
            slot.process.join()

    def _call(self, slot: _Slot, future: Future, fn: Callable, args: tuple, kwargs: dict) -> None:
        with self._lock:
            if slot.process is None or not slot.process.is_alive():
                ours, theirs = self._context.Pipe()
                slot.process = self._context.Process(
                    target=_work,
                    args=(theirs, self._initializer, self._initargs),
                    name="mlserver-training",
                )
                slot.process.start()
                theirs.close()
                slot.conn = ours
            slot.future = future
        conn = slot.conn
        assert conn is not None
        try:
            conn.send((fn, args, kwargs))
            ok, value = conn.recv()
        except (EOFError, OSError):  # killed by `terminate`, or it crashed
            slot.process.join()
            code = slot.process.exitcode
            with self._lock:
                slot.process, slot.conn = None, None
            conn.close()
            future.set_exception(
                ChildProcessError(
                    f"the training process ended (exit code {code}) before the job returned"
                )
            )
            return
        except Exception as exc:  # a job that does not pickle, an outcome that does not unpickle
            future.set_exception(exc)
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def executor_slots(executor: Executor) -> int | None:
    """How many jobs the executor runs at once, where that is known (not on Dask)."""
    if isinstance(executor, ProcessPool):
        return executor.workers
    if isinstance(executor, (ThreadPoolExecutor, ProcessPoolExecutor)):
        return executor._max_workers  # type: ignore[attr-defined]  # stable since 3.2
    return None
