"""`--workers` above 1: gunicorn runs one app per worker process, so every core takes requests.

PERF: one waitress process is bound by the GIL; measured in docs/performance.md.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from typing import Any

from mlserver.cli.logs import say
from mlserver.cli.options import security, warn_if_unsigned
from mlserver.cli.store import open_store, public_url
from mlserver.cli.target import registry
from mlserver.config import Settings
from mlserver.errors import ConfigurationError
from mlserver.http.app import App, create_app

__all__ = ["serve_workers"]


def serve_workers(options: Mapping[str, Any], settings: Settings, names: list[str]) -> int:
    """Serve with gunicorn until it stops; returns the exit code."""
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise ConfigurationError(
            "--workers above 1 needs gunicorn: pip install 'ml-server[gunicorn]'"
        ) from None
    if options["executor"] != "thread":
        raise ConfigurationError("--workers above 1 trains on each worker's own thread pool")

    class Workers(BaseApplication):
        app: App | None = None

        def load_config(self) -> None:
            config = {
                "bind": f"{options['host']}:{options['port']}",
                "workers": options["workers"],
                "threads": options["threads"],
                "worker_class": "gthread",
                "graceful_timeout": int(options["graceful_timeout"]),
                "loglevel": options["log_level"],
                "preload_app": False,  # heartbeats and training threads belong to each worker
                "when_ready": self._ready,
                "worker_exit": self._exit,
            }
            for name, value in config.items():
                self.cfg.set(name, value)

        def load(self) -> App:
            store = open_store(options["store"], settings)
            served = registry(options["target"])
            self.app = create_app(served, store, settings=settings, **security(options))
            self.app.start()
            gc.collect(1)  # as `serve` does: young garbage only, then freeze the rest
            gc.freeze()
            return self.app

        def _ready(self, server: Any) -> None:
            host, port = server.LISTENERS[0].sock.getsockname()[:2]
            say(
                sys.stdout,
                f"serving {len(names)} models on http://{host}:{port} with "
                f"{options['workers']} workers (store {public_url(options['store'])}): "
                f"{', '.join(names)}",
            )
            warn_if_unsigned(options)

        def _exit(self, server: Any, worker: Any) -> None:
            if self.app is not None:
                self.app.close(options["graceful_timeout"])
                self.app.service.store.close()

    master = os.getpid()
    try:
        Workers().run()
    except SystemExit as exc:  # gunicorn ends the master and each worker by SystemExit
        if os.getpid() != master:
            # NOTE: a worker has closed its app (worker_exit); skipping interpreter teardown
            # in a forked process avoids onnxruntime aborting in its thread-pool destructor.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 0)
        if exc.code not in (0, None):
            raise
    say(sys.stdout, "stopped")
    return 0
