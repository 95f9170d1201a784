"""Training jobs on a Dask cluster whose scheduler needs nothing but Dask.

Dask's scheduler unpickles every task it receives (distributed 2023.4 and later), so a job that
carries a wrapper instance makes the scheduler import the wrapper's module: a scheduler with
only Dask (and ml-server) installed failed every such job with Dask's bare "Error during
deserialization of the task graph". `DaskExecutor` pickles each job here, in the server, and
gives Dask a call of the builtin `pickle.loads` on those bytes: the scheduler sees a builtin and
bytes, and only the worker unpickles the job, where a module it lacks becomes an error that
names the module and the worker.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["DaskExecutor", "for_cluster", "run_sealed"]


class DaskExecutor(Executor):
    """Submits through a Dask `ClientExecutor` (`client.get_executor()`) without the scheduler
    ever unpickling the job; futures, cancellation and shutdown are that executor's own."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` on a worker; Dask's task key is `fn`'s name and a uuid."""
        import cloudpickle  # a dependency of distributed

        # NOTE: cloudpickle as Dask itself would: by reference for importable classes (the
        # workers import them), by value for classes made at run time. Unpickling `_Sealed`
        # calls `run_sealed` on the parts, so the worker's `pickle.loads` runs the job.
        # PERF: protocol 5 keeps the training data's arrays out of the pickles, as buffers
        # Dask sends beside the task without copying them here.
        buffers: list[pickle.PickleBuffer] = []
        inner = cloudpickle.dumps((fn, args, kwargs), protocol=5, buffer_callback=buffers.append)
        parts = [inner, *buffers]
        outer = pickle.dumps(_Sealed(parts), protocol=5, buffer_callback=lambda _: False)
        key = f"{getattr(fn, '__name__', 'job')}-{uuid.uuid4().hex}"
        return self._executor.submit(pickle.loads, outer, buffers=parts, key=key)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down: it waits for the jobs it submitted, or cancels them."""
        # NOTE: a ClientExecutor has no `cancel_futures`; not waiting is how it cancels.
        self._executor.shutdown(wait=wait and not cancel_futures)


def for_cluster(executor: Executor) -> Executor:
    """`executor` as jobs should use it: a Dask `ClientExecutor` wrapped in `DaskExecutor`."""
    # NOTE: recognised by name, so that mlserver imports distributed only where it is used.
    names = {(kind.__module__, kind.__name__) for kind in type(executor).__mro__}
    if ("distributed.cfexecutor", "ClientExecutor") in names:
        return DaskExecutor(executor)
    return executor


class _Sealed:
    """Pickles to a call of `run_sealed` on `parts` (the job's pickle and its buffers), each
    part out of band."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[pickle.PickleBuffer, ...]]:
        return run_sealed, tuple(pickle.PickleBuffer(part) for part in self.parts)


def run_sealed(payload: Any, *buffers: Any) -> Any:
    """On a worker: unpickle the job (saying what is missing there if that fails) and run it."""
    # NOTE: arrays are made on these buffers; read-only ones are copied, so that a fit may
    # change its data in place as it could on any other executor.
    writable = [b if not memoryview(b).readonly else bytearray(b) for b in buffers]
    try:
        fn, args, kwargs = pickle.loads(payload, buffers=writable)
    except ImportError as exc:
        # NOTE: builtin exception types only: whatever carries the error back must unpickle
        # it without our modules.
        missing = exc.name or "?"
        detail = "" if isinstance(exc, ModuleNotFoundError) else f" ({exc})"
        raise ModuleNotFoundError(
            f"the Dask worker {_worker()}cannot import module {missing!r}{detail}, which the job "
            "needs: install it on every Dask worker, importable under that name (e.g. on the "
            "workers' PYTHONPATH); the scheduler does not need it",
            name=exc.name,
        ) from None
    except Exception as exc:
        raise RuntimeError(
            f"the Dask worker {_worker()}could not unpickle the job "
            f"({type(exc).__name__}: {exc}): install the same versions of the wrapper's "
            "module and of ml-server's dependencies on the workers as on the server"
        ) from None
    return fn(*args, **kwargs)


def _worker() -> str:
    """The address of the Dask worker running this, and a space; empty outside one."""
    try:
        from distributed import get_worker

        return f"{get_worker().address} "
    except (ImportError, ValueError):
        return ""
