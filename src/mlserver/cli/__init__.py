"""`ml-server`: serve a registry (or the built-in catalog) with waitress.

The process entry point: the only package that imports waitress, reads the environment for the
server, configures logging and handles signals. Everything it builds comes from the library's
public parts (`create_app`, `SQLStore`, `Settings`), so a server started by hand behaves the same.

Modules: `main` (the parser and the entry point), `options` (flags and variables), `target`
(loading TARGET), `store` (opening the store URL), `serve` (one waitress process), `loop`
(waitress' event loop, its refusals and signals), `workers` (gunicorn), `executors` (process
pool and Dask), `versions` (a key's history, read from the store), `logs` (the log format and
the lines for people).
"""

from __future__ import annotations

from mlserver.cli.logs import KeyValueFormatter
from mlserver.cli.main import main
from mlserver.cli.store import public_url
from mlserver.cli.target import load_target

__all__ = ["KeyValueFormatter", "load_target", "main", "public_url"]
