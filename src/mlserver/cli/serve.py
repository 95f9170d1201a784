"""`ml-server serve`: build the app from the options, serve it with waitress until a signal,
then stop gracefully (in-flight requests and training jobs within --graceful-timeout)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from concurrent.futures import Executor

from mlserver.cli import loop, options
from mlserver.cli.executors import close_app, dask_client, process_pool
from mlserver.cli.logs import configure_logging, say
from mlserver.cli.store import open_store, public_url
from mlserver.cli.target import registry
from mlserver.cli.workers import serve_workers
from mlserver.http.app import create_app

__all__ = ["serve"]

log = logging.getLogger("mlserver.cli")


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    values, settings = options.read(args, os.environ)
    configure_logging(values["log_level"], sys.stderr)
    served = registry(values["target"])
    store = open_store(values["store"], settings)
    if values["workers"] > 1:
        store.close()  # each worker opens its own
        return serve_workers(values, settings, [w.name for w in served])
    with contextlib.ExitStack() as resources:
        resources.callback(store.close)
        executor: Executor | None = None
        if values["executor"] == "process":
            executor = process_pool(settings.training_threads, values["log_level"])
        elif values["executor"] == "dask":
            client = dask_client(values["scheduler"])
            resources.callback(client.close)  # after `close_app`: the jobs' outcomes come here
            # NOTE: pure=False: every job is a task of its own, as on a pool. Dask's default
            # would merge identical tasks (same data and kwargs, e.g. two names) into one fit.
            executor = client.get_executor(pure=False)
        app = create_app(
            served, store, settings=settings, executor=executor, **options.security(values)
        )
        app.start()  # sweep interrupted jobs before listening, traffic or not
        # NOTE: one callback: the app waits for its jobs (within the deadline) before the
        # executor is shut down.
        deadline: list[float] = []
        resources.callback(close_app, app, executor, deadline)
        socket_map = loop.listen(app, values["host"], values["port"], values["threads"])
        listeners = loop.listening(socket_map)
        stopper = loop.Stopper(listeners[0].pull_trigger)
        # PERF: what is alive now (imports, registry, app) lives as long as the process; the
        # cyclic collector need not scan it again (a large cut of predict tail latency). The
        # young generations only are collected first: a full collection of the ~150k
        # objects imported costs ~50-100 ms of the start and found ~20 to free.
        gc.collect(1)
        gc.freeze()
        with stopper.installed():
            names = [wrapper.name for wrapper in served]
            say(
                sys.stdout,
                f"serving {len(names)} models on {' and '.join(map(loop.url, listeners))} "
                f"(store {public_url(values['store'])}): {', '.join(names)}",
            )
            log.info(
                "event=serving threads=%d executor=%s scheduler=%s",
                values["threads"],
                values["executor"],
                values["scheduler"],
            )
            options.warn_if_unsigned(values)
            while stopper.signal is None:
                loop.loop(socket_map, listeners[0], listeners[0].adj.asyncore_loop_timeout)
            log.info("event=stopping signal=%s", signal.Signals(stopper.signal).name)
            # Requests and training jobs share one deadline: the stop takes --graceful-timeout.
            deadline.append(time.monotonic() + values["graceful_timeout"])
            loop.stop_listening(listeners)
            jobs = app.service.jobs.running
            say(sys.stdout, f"stopping: finishing in-flight requests and {jobs} training job(s)")
            loop.drain(socket_map, listeners, values["graceful_timeout"])
            resources.close()  # waits for training jobs; a second signal still exits at once
    left = app.service.jobs.left
    if left:
        say(
            sys.stdout,
            f"left {left} training job(s) RUNNING past --graceful-timeout; a live server "
            "marks them interrupted once their lease runs out",
        )
    say(sys.stdout, "stopped")
    if app.service.jobs.busy:
        # NOTE: a training thread cannot be stopped, and the interpreter would wait for it at
        # exit (concurrent.futures joins its threads): end without that wait.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    return 0
