"""Where `--executor process` and `--executor dask` run training jobs, and how they stop."""

from __future__ import annotations

import logging
import signal
import sys
import time
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from mlserver.cli.logs import PROG, configure_logging
from mlserver.errors import ConfigurationError
from mlserver.http.app import App
from mlserver.pool import ProcessPool

if TYPE_CHECKING:
    import distributed  # optional (`ml-server[dask]`): imported when --executor dask is used

__all__ = ["close_app", "dask_client", "process_pool"]

log = logging.getLogger("mlserver.cli")


def _init_worker(log_level: str) -> None:
    """Set up a training process: the server's log format, and no SIGINT of its own."""
    configure_logging(log_level, sys.stderr)
    # NOTE: Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_pool(workers: int, log_level: str) -> ProcessPool:
    """`workers` spawned training processes that log as the server does."""
    # NOTE: a ProcessPool (spawned processes), not ProcessPoolExecutor: a job that times out
    # has its process killed, which would break every other job of a ProcessPoolExecutor.
    return ProcessPool(workers, initializer=_init_worker, initargs=(log_level,))


def dask_client(address: str) -> distributed.Client:
    """A `distributed.Client` connected to the scheduler at `address`.

    Raises:
        ConfigurationError: `distributed` is not installed, or the scheduler did not answer
            within Dask's connect timeout (`distributed.comm.timeouts.connect`).
    """
    try:
        import dask.config
        import distributed
        import distributed.comm
    except ImportError as exc:
        raise ConfigurationError(
            f"--executor dask needs the distributed package ({exc}); "
            "install it with: pip install 'ml-server[dask]'"
        ) from exc
    try:
        # NOTE: checked first: a Client that fails on a bad address is left half-open, and
        # its __del__ prints a traceback at exit.
        distributed.comm.get_address_host_port(address)
    except ValueError as exc:
        raise ConfigurationError(f"bad Dask scheduler address {address!r}: {exc}") from None
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False, name=PROG)
    except Exception as exc:  # OSError when nothing answers within the timeout
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigurationError(f"Dask scheduler {address} is not reachable: {detail}") from exc
    try:
        workers = len(client.scheduler_info().get("workers", {}))
    except Exception:
        client.close()
        raise
    log.info("event=dask_connected scheduler=%s workers=%d", address, workers)
    if not workers:
        log.warning("event=dask_no_workers scheduler=%s detail=%r", address, "jobs wait for one")
    return client


def close_app(app: App, executor: Executor | None, deadline: list[float]) -> None:
    """Close the app, its jobs waited for until the stop's deadline (if it has one), then the
    executor: what still runs then is stopped (process pool) or cancelled (Dask)."""
    timeout = max(0.0, deadline[0] - time.monotonic()) if deadline else None
    app.close(timeout)
    if isinstance(executor, ProcessPool):
        executor.shutdown(wait=True, cancel_futures=True)
    elif executor is not None:
        # NOTE: Dask: every outcome was recorded or abandoned; wait=False cancels whatever
        # the cluster still holds of this client's jobs.
        executor.shutdown(wait=False)
