"""`ml-server`: serve a registry (or the built-in catalog) with waitress.

The process entry point: the only module that imports waitress, reads the environment for the
server, configures logging and handles signals. Everything it builds comes from the library's
public parts (`create_app`, `SQLStore`, `Settings`), so a server started by hand behaves the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, TextIO

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from mlserver.config import ENV_PREFIX, Settings
from mlserver.errors import ConfigurationError, StoreError
from mlserver.http.app import App, create_app
from mlserver.http.auth import load_token_file, parse_tokens
from mlserver.pool import ProcessPool
from mlserver.registry import Registry
from mlserver.signing import Signer, parse_signing_keys
from mlserver.store import SQLStore

if TYPE_CHECKING:
    import distributed  # optional (`ml-server[dask]`): imported when --executor dask is used

__all__ = ["load_target", "main", "public_url"]

log = logging.getLogger("mlserver.cli")

PROG = "ml-server"
#: Prefix of every line the CLI writes for people (start-up, stop, errors).
SAY = "mlserver:"
#: Exit code of a start-up the user can fix: bad TARGET, store URL, setting, busy port.
EXIT_USAGE = 2
LOG_LEVELS = ("debug", "info", "warning", "error")
EXECUTORS = ("thread", "process", "dask")


# -- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    """One `serve` option: its flag, its MLSERVER_ variable and its default, in one place."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0 to 65535, got {value}")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"must be zero or more seconds, got {raw}")
    return value


def _configured(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse`, its ConfigurationError turned into the ValueError option parsers raise."""

    def checked(raw: str) -> Any:
        try:
            return parse(raw)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    checked.__name__ = parse.__name__
    return checked


def _signing_keys(text: str) -> Signer:
    return Signer(parse_signing_keys(text))


def _read_signing_keys(path: str) -> Signer:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path!r}: {exc.strerror}") from None
    return _signing_keys(text)


_OPTIONS = (
    _Option("store", str, "sqlite:///mlserver.db", "database URL of the model store", "URL"),
    _Option("host", str, "127.0.0.1", "interface to listen on; 0.0.0.0 for all", "HOST"),
    _Option("port", _port, 8080, "TCP port; 0 picks a free one", "PORT"),
    _Option("threads", _positive_int, 8, "request threads (per worker process)", "N"),
    _Option(
        "workers",
        _positive_int,
        1,
        "server processes; above 1 they run under gunicorn (pip install 'ml-server[gunicorn]'), "
        "each with its own app, model cache and training pool",
        "N",
    ),
    _Option(
        "executor",
        str,
        "thread",
        "where training jobs run: a thread pool, a pool of --training-threads processes, or "
        "the Dask cluster of --scheduler",
        choices=EXECUTORS,
    ),
    _Option(
        "scheduler",
        str,
        None,
        "address of the Dask scheduler, e.g. tcp://scheduler:8786; required with --executor "
        "dask (connect timeout: Dask's distributed.comm.timeouts.connect)",
        "ADDRESS",
    ),
    _Option(
        "graceful_timeout",
        _seconds,
        30.0,
        "seconds in-flight requests and running training jobs get to finish after "
        "SIGTERM/SIGINT; jobs still running then are left to their lease",
        "SECONDS",
    ),
    _Option("log_level", str.lower, "warning", "log level", choices=LOG_LEVELS),
    _Option(
        "token_file",
        _configured(load_token_file),
        None,
        "file of accepted API tokens, one '<sha256-hex> <scope>[,<scope>...]' per line "
        "(scopes: predict, train, admin); turns on auth",
        "PATH",
    ),
    _Option(
        "tokens",
        _configured(parse_tokens),
        None,
        "accepted API tokens as in --token-file, entries separated by ';' (merged with "
        "--token-file's); turns on auth",
        "ENTRIES",
    ),
    _Option(
        "signing_keys",
        _configured(_signing_keys),
        None,
        "keys that sign stored models, 'id:secret' entries separated by ',', the first signs, "
        "all verify; prefer the variable or --signing-keys-file (flags show in ps)",
        "ID:SECRET,...",
    ),
    _Option(
        "signing_keys_file",
        _configured(_read_signing_keys),
        None,
        "file of signing keys, one 'id:secret' per line, the first signs",
        "PATH",
    ),
)

# Help for the Settings fields; a field added to Settings gets a flag even before it gets text.
_SETTING_HELP = {
    "max_body_bytes": "largest request body, in bytes (413 above it)",
    "training_threads": "training threads (or processes, with --executor process)",
    "training_timeout_seconds": "seconds a training job may run before it is FAILED (timed out)",
    "max_queued_jobs": "training jobs that may wait for a slot; beyond it PUT/PATCH get a 503",
    "model_cache_size": "deserialized model versions kept in memory",
    "model_cache_bytes": "serialized bytes of the cached versions, at most",
    "lease_seconds": "seconds a RUNNING version stays claimed without a heartbeat",
    "heartbeat_seconds": "seconds between lease renewals and sweeps for interrupted jobs",
    "refuse_version_skew": "refuse (409) versions trained with other library versions",
    "max_rows": "most rows of x a request may carry (422 above it)",
    "max_columns": "most columns of x a request may carry (422 above it)",
    "max_output_cells": "most cells of a sparse model output made dense (422 above it)",
    "database_timeout_seconds": "seconds a database call may wait before it answers 503",
    "max_decoded_bytes": "most bytes an Arrow, Parquet or CSV body may decode to (422 above it)",
}


def _security(options: Mapping[str, Any]) -> dict[str, Any]:
    """create_app's `tokens` and `signing_keys` from the options; tokens of both sources
    merge, signing keys come from one."""
    if options["signing_keys"] and options["signing_keys_file"]:
        raise ConfigurationError(
            "give signing keys once: --signing-keys (MLSERVER_SIGNING_KEYS) or "
            "--signing-keys-file (MLSERVER_SIGNING_KEYS_FILE), not both"
        )
    tokens = {**(options["token_file"] or {}), **(options["tokens"] or {})} or None
    signer = options["signing_keys"] or options["signing_keys_file"]
    log.info(
        "event=security auth=%s tokens=%d signing=%s",
        "on" if tokens else "off",
        len(tokens or {}),
        "off" if signer is None else f"on signing_key={signer.signing_key}",
    )
    return {"tokens": tokens, "signing_keys": signer}


def _warn_if_unsigned(options: Mapping[str, Any]) -> None:
    """Once serving (a start-up error stays one line): say that signing is off."""
    if not (options["signing_keys"] or options["signing_keys_file"]):
        log.warning(
            "event=signing_off detail=%r",
            "signing off: stored models load without a signature check, so whoever can "
            "write the database can run code here; set MLSERVER_SIGNING_KEYS",
        )


def _setting_type(field: dataclasses.Field) -> str:
    return str(getattr(field.type, "__name__", field.type))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve and train scikit-learn-style models over REST."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve models over HTTP",
        description="Serve a registry of models over HTTP with waitress, training on a pool.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_SERVE_EPILOG,
    )
    serve.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="package.module:attr or path/to/file.py:attr naming a Registry, a list of "
        "wrappers, or a function returning one [env MLSERVER_TARGET; default: the catalog]",
    )
    for option in _OPTIONS:
        serve.add_argument(
            option.flag,
            dest=option.name,
            type=_for_argparse(option.parse),
            choices=option.choices,
            metavar=option.metavar,
            help=f"{option.help} [env {option.env}; default {_shown(option.default)}]",
        )
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        env = ENV_PREFIX + field.name.upper()
        text = _SETTING_HELP.get(field.name, f"Settings.{field.name}")
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if _setting_type(field) == "bool":
            serve.add_argument(
                flag,
                dest=f"setting_{field.name}",
                action=argparse.BooleanOptionalAction,
                help=f"{text} [env {env}=true|false; default {str(default).lower()}]",
            )
        else:
            parse = int if _setting_type(field) == "int" else float
            serve.add_argument(
                flag,
                dest=f"setting_{field.name}",
                type=_for_argparse(parse),
                metavar="SECONDS" if field.name.endswith("_seconds") else "N",
                help=f"{text} [env {env}; default {default}]",
            )
    serve.set_defaults(run=_serve)

    listing = commands.add_parser(
        "catalog",
        help="list the built-in models",
        description="List the models `ml-server serve` offers without a TARGET.",
    )
    listing.set_defaults(run=_list_catalog)
    return parser


_SERVE_EPILOG = f"""\
environment:
  Every option can also come from an environment variable: TARGET from MLSERVER_TARGET,
  --foo-bar from MLSERVER_FOO_BAR (e.g. MLSERVER_STORE, MLSERVER_PORT, MLSERVER_EXECUTOR,
  MLSERVER_MAX_BODY_BYTES). A flag wins over the variable, the variable over the default.

examples:
  {PROG} serve                                  the catalog on http://127.0.0.1:8080
  {PROG} serve myapp.models:registry --port 0   a registry of yours, on a free port
  {PROG} serve models.py:build --store postgresql://user:secret@db/models
  {PROG} serve myapp.models:registry --executor dask --scheduler tcp://scheduler:8786
      trains on a Dask cluster (pip install 'ml-server[dask]'); its workers need the same
      packages, and myapp importable

On SIGTERM or SIGINT the server stops accepting connections, lets in-flight requests finish
and waits for running training jobs, all within --graceful-timeout; queued jobs are FAILED
(cancelled), and jobs still running then are left RUNNING until their lease runs out (a live
server marks them interrupted). A second signal exits at once.
"""


def _shown(default: Any) -> Any:
    return "none" if default is None else default


def _for_argparse(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` with its ValueError text shown by argparse (it hides ValueError messages)."""

    def converted(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(_reason(exc, raw)) from None

    converted.__name__ = getattr(parse, "__name__", "value")
    return converted


def _reason(exc: ValueError, raw: str) -> str:
    text = str(exc)
    return text if text and "invalid literal" not in text else f"not a number: {raw!r}"


def _options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Each option from its flag, else its environment variable, else its default."""
    values: dict[str, Any] = {"target": args.target or environ.get(ENV_PREFIX + "TARGET")}
    for option in _OPTIONS:
        value = getattr(args, option.name)
        if value is None and environ.get(option.env):
            raw = environ[option.env]
            try:
                value = option.parse(raw)
            except ValueError as exc:
                raise ConfigurationError(f"{option.env}: {_reason(exc, raw)}") from None
            if option.choices and value not in option.choices:
                raise ConfigurationError(
                    f"{option.env} must be one of {', '.join(option.choices)}, got {raw!r}"
                )
        values[option.name] = option.default if value is None else value
    if values["executor"] == "dask" and not values["scheduler"]:
        raise ConfigurationError(
            "--executor dask needs --scheduler ADDRESS (or MLSERVER_SCHEDULER), "
            "e.g. tcp://scheduler:8786"
        )
    if values["scheduler"] and values["executor"] != "dask":
        # NOTE: a scheduler given without `--executor dask` would silently train locally.
        raise ConfigurationError(
            f"--scheduler is only used with --executor dask, not {values['executor']}"
        )
    return values


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from MLSERVER_<FIELD> variables, overridden by the flags given."""
    flags = {
        field.name: getattr(args, f"setting_{field.name}")
        for field in dataclasses.fields(Settings)
        if getattr(args, f"setting_{field.name}") is not None
    }
    return Settings.from_env(environ).replace(**flags)


# -- TARGET --------------------------------------------------------------------------------


def load_target(target: str) -> Registry:
    """The registry TARGET names: `package.module:attr` or `path/to/file.py:attr`.

    `attr` (dots allowed) is a Registry, a list or tuple of wrappers, or a zero-argument
    callable returning either. A module is imported as `python -m` would, with the working
    directory on sys.path; a file is imported under its own name with its directory on
    sys.path, so its wrapper classes pickle (and process pools can run their jobs).

    Raises:
        ConfigurationError: with a one-line reason, whatever went wrong.
    """
    where, colon, attribute = target.rpartition(":")
    if not colon or not where or not attribute:
        raise ConfigurationError(
            f"TARGET must be package.module:attr or path/to/file.py:attr, got {target!r}"
        )
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _import_file(Path(where))
    else:
        module = _import_module(where)
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(f"{where} has no attribute {attribute!r}") from None
    if callable(found):
        try:
            found = found()
        except Exception as exc:
            raise ConfigurationError(f"calling {target} failed: {_describe(exc)}") from exc
    if isinstance(found, Registry):
        return found
    if isinstance(found, (list, tuple)):
        return Registry(found)
    raise ConfigurationError(
        f"{target} is a {type(found).__name__}; expected a Registry, a list or tuple of model "
        "wrappers, or a function returning one"
    )


def _import_module(name: str) -> ModuleType:
    # NOTE: `python -m` and `waitress-serve` find modules in the working directory; the
    # console script does not put it on sys.path by itself.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigurationError(f"no module named {name!r}") from None
        raise ConfigurationError(f"importing {name} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise ConfigurationError(f"importing {name} failed: {_describe(exc)}") from exc


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigurationError(f"no such file: {str(path)!r}")
    path = path.resolve()
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", None) or "").resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"not a Python file: {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered under its own name, with its directory on sys.path, so pickle finds its
    # classes here and in the spawned workers of --executor process. A name already taken
    # (e.g. a file called json.py) still loads, unregistered, for the thread executor.
    registered = loaded is None and name.isidentifier()
    if registered:
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if registered:
            del sys.modules[name]
        raise ConfigurationError(f"importing {path} failed: {_describe(exc)}") from exc
    return module


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- store URL -----------------------------------------------------------------------------


def public_url(url: str) -> str:
    """`url` without credentials (user, password) or query, safe to print and log."""
    scheme, separator, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    if separator and not scheme.startswith("sqlite") and "@" in rest:
        # NOTE: the last "@" ends the credentials even when a raw password holds "/" or "@".
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{separator}{rest}"


def _open_store(url: str, settings: Settings) -> SQLStore:
    shown = public_url(url)
    # ConfigurationError for a bad URL; opens nothing yet
    store = SQLStore(url, timeout=settings.database_timeout_seconds)
    try:
        store.ping()  # NOTE: fail at start-up with one line, not at the first request
    except StoreError as exc:
        store.close()
        cause = exc.__cause__
        detail = " ".join(str(cause).split()) if cause else str(exc)
        raise ConfigurationError(f"store {shown} is not usable: {detail}") from exc
    return store


# -- logging -------------------------------------------------------------------------------

# A message that already is key=value pairs (the library logs `event=... key=value`).
_PAIRS = re.compile(r"^[A-Za-z_][\w.-]*=")


class KeyValueFormatter(logging.Formatter):
    """One line per record: `ts=... level=... logger=... event=...`; other text is quoted."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not _PAIRS.match(message):
            message = "msg=" + json.dumps(message)
        line = (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S%z')} "
            f"level={record.levelname.lower()} logger={record.name} {message}"
        )
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


def _configure_logging(level: str, stream: TextIO) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_mlserver_cli", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    handler._mlserver_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Warnings (e.g. a fit that did not converge) become log records in the same format.
    logging.captureWarnings(True)
    # NOTE: waitress warns "Task queue depth is N" for every request that waits for a free
    # thread: thousands of lines a second under load (we measured ~16,000 in 10 s at 8
    # connections), saying only that --threads is smaller than the load, which is normal.
    # They are kept at debug level, where sizing threads is what one is looking at.
    logging.getLogger("waitress.queue").setLevel(
        logging.NOTSET if level == "debug" else logging.ERROR
    )
    # NOTE: peewee logs every query with its parameters at debug level: model blobs included.
    logging.getLogger("peewee").setLevel(logging.INFO)


# -- serving -------------------------------------------------------------------------------


def _init_worker(log_level: str) -> None:
    """Set up a training process: the server's log format, and no SIGINT of its own."""
    _configure_logging(log_level, sys.stderr)
    # NOTE: Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_pool(workers: int, log_level: str) -> ProcessPool:
    # NOTE: a ProcessPool (spawned processes), not ProcessPoolExecutor: a job that times out
    # has its process killed, which would break every other job of a ProcessPoolExecutor.
    return ProcessPool(workers, initializer=_init_worker, initargs=(log_level,))


class _Stopper:
    """The first SIGTERM/SIGINT asks for a graceful stop; a second one exits at once."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.signal: int | None = None
        self._wake = wake
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            # NOTE: os.write, not print: the handler may interrupt a write to the same stream.
            name = signal.Signals(signum).name
            os.write(2, f"{SAY} {name} again: exiting without waiting\n".encode())
            os._exit(1)
        self.signal = signum
        self._wake()  # the event loop is waiting in poll(); let it see the request now

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM and SIGINT inside the block (main thread only), then restore."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self)
        try:
            yield
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)


def _url(listener: BaseWSGIServer) -> str:
    host = str(listener.effective_host)
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"http://{host}:{listener.effective_port}"


def _loop(socket_map: dict, listener: BaseWSGIServer, timeout: float) -> None:
    """One turn of waitress' event loop (what `server.run()` repeats forever)."""
    wasyncore.loop(
        timeout=timeout, map=socket_map, use_poll=listener.adj.asyncore_use_poll, count=1
    )


def _stop_listening(listeners: list[BaseWSGIServer]) -> None:
    """Refuse new connections at once (a load balancer retries them elsewhere)."""
    for listener in listeners:
        # NOTE: close only the listening socket; `listener.close()` would also close the
        # trigger the worker threads use to wake the loop, which still has answers to send.
        wasyncore.dispatcher.close(listener)


def _drain(socket_map: dict, listeners: list[BaseWSGIServer], grace: float) -> None:
    """Let in-flight requests finish and their answers go out, then close every connection."""
    first = listeners[0]
    deadline = time.monotonic() + grace
    drained = threading.Event()

    def shutdown() -> None:
        # Each thread ends after its current request; requests still queued are cancelled.
        first.task_dispatcher.shutdown(cancel_pending=True, timeout=grace)
        drained.set()

    threading.Thread(target=shutdown, name="mlserver-drain", daemon=True).start()
    while not drained.is_set():
        _loop(socket_map, first, 0.05)
    # Answers bigger than the socket buffer are sent by the loop, not the worker thread.
    flush_until = max(deadline, time.monotonic() + 1.0)
    while time.monotonic() < flush_until and any(d.writable() for d in list(socket_map.values())):
        _loop(socket_map, first, 0.05)
    for listener in listeners:
        listener.close()
    wasyncore.close_all(socket_map)


def _serve(args: argparse.Namespace) -> int:
    options = _options(args, os.environ)
    settings = _settings(args, os.environ)
    _configure_logging(options["log_level"], sys.stderr)
    registry = _registry(options["target"])
    store = _open_store(options["store"], settings)
    if options["workers"] > 1:
        store.close()  # each worker opens its own
        return _serve_workers(options, settings, [w.name for w in registry])
    with contextlib.ExitStack() as resources:
        resources.callback(store.close)
        executor: Executor | None = None
        if options["executor"] == "process":
            executor = _process_pool(settings.training_threads, options["log_level"])
        elif options["executor"] == "dask":
            client = _dask_client(options["scheduler"])
            resources.callback(client.close)  # after `_close_app`: the jobs' outcomes come here
            # NOTE: pure=False: every job is a task of its own, as on a pool. Dask's default
            # would merge identical tasks (same data and kwargs, e.g. two names) into one fit.
            executor = client.get_executor(pure=False)
        app = create_app(
            registry, store, settings=settings, executor=executor, **_security(options)
        )
        app.start()  # sweep interrupted jobs before listening, traffic or not
        # NOTE: one callback: the app waits for its jobs (within the deadline) before the
        # executor is shut down.
        deadline: list[float] = []
        resources.callback(_close_app, app, executor, deadline)
        socket_map = _listen(app, options["host"], options["port"], options["threads"])
        listeners = [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]
        stopper = _Stopper(listeners[0].pull_trigger)
        # PERF: what is alive now (imports, registry, app) lives as long as the process; the
        # cyclic collector need not scan it again (a large cut of predict tail latency).
        gc.collect()
        gc.freeze()
        with stopper.installed():
            names = [wrapper.name for wrapper in registry]
            _say(
                sys.stdout,
                f"serving {len(names)} models on {' and '.join(map(_url, listeners))} "
                f"(store {public_url(options['store'])}): {', '.join(names)}",
            )
            log.info(
                "event=serving threads=%d executor=%s scheduler=%s",
                options["threads"],
                options["executor"],
                options["scheduler"],
            )
            _warn_if_unsigned(options)
            while stopper.signal is None:
                _loop(socket_map, listeners[0], listeners[0].adj.asyncore_loop_timeout)
            log.info("event=stopping signal=%s", signal.Signals(stopper.signal).name)
            # Requests and training jobs share one deadline: the stop takes --graceful-timeout.
            deadline.append(time.monotonic() + options["graceful_timeout"])
            _stop_listening(listeners)
            jobs = app.service.jobs.running
            _say(sys.stdout, f"stopping: finishing in-flight requests and {jobs} training job(s)")
            _drain(socket_map, listeners, options["graceful_timeout"])
            resources.close()  # waits for training jobs; a second signal still exits at once
    left = app.service.jobs.left
    if left:
        _say(
            sys.stdout,
            f"left {left} training job(s) RUNNING past --graceful-timeout; a live server "
            "marks them interrupted once their lease runs out",
        )
    _say(sys.stdout, "stopped")
    if app.service.jobs.busy:
        # NOTE: a training thread cannot be stopped, and the interpreter would wait for it at
        # exit (concurrent.futures joins its threads): end without that wait.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    return 0


def _serve_workers(options: Mapping[str, Any], settings: Settings, names: list[str]) -> int:
    """Serve with gunicorn: one app per worker process, so both cores take requests.

    PERF: one waitress process is bound by the GIL; measured in docs/performance.md.
    """
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
            store = _open_store(options["store"], settings)
            registry = _registry(options["target"])
            self.app = create_app(registry, store, settings=settings, **_security(options))
            self.app.start()
            gc.collect()
            gc.freeze()
            return self.app

        def _ready(self, server: Any) -> None:
            host, port = server.LISTENERS[0].sock.getsockname()[:2]
            _say(
                sys.stdout,
                f"serving {len(names)} models on http://{host}:{port} with "
                f"{options['workers']} workers (store {public_url(options['store'])}): "
                f"{', '.join(names)}",
            )
            _warn_if_unsigned(options)

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
    _say(sys.stdout, "stopped")
    return 0


def _registry(target: str | None) -> Registry:
    if target:
        registry = load_target(target)
    else:
        from mlserver.catalog import catalog  # NOTE: imports many estimators; only when used

        registry = catalog()
    if not len(registry):
        raise ConfigurationError(f"{target} has no models to serve")
    return registry


def _listen(app: App, host: str, port: int, threads: int) -> dict[int, Any]:
    """waitress listening on host:port; returns its socket map, where the event loop runs."""
    socket_map: dict[int, Any] = {}
    try:
        # PERF: waitress spools bodies above 512 KiB to a temporary file; keep any body the
        # app accepts (max_body_bytes) in memory instead. And it reads 8 KiB per recv: a 2 MB
        # body took ~6.5 ms to arrive over loopback, ~2.3 ms at 256 KiB per recv.
        # NOTE: waitress receives a whole body before the app sees any of it; its own
        # limit refuses one whose Content-Length is above max_body_bytes before reading it,
        # and a chunked one as soon as that much has arrived. It refuses at the limit
        # itself: hence the 1.
        limit = app.service.settings.max_body_bytes
        waitress.create_server(
            app,
            map=socket_map,
            host=host,
            port=port,
            threads=threads,
            inbuf_overflow=limit,
            max_request_body_size=limit + 1,
            recv_bytes=256 * 1024,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from exc
    except ValueError as exc:  # waitress' own checks of its adjustments
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from exc
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = _Channel
    return socket_map


class _ErrorAnswer(ErrorTask):
    """waitress' own refusals (413 above the body limit, 400 for a malformed request) in
    the app's error shape, `{"title", "description"}`; the connection closes after them."""

    def execute(self) -> None:
        error = self.request.error
        title, description = error.reason, str(error.body)
        if isinstance(error, RequestEntityTooLarge):
            limit = self.channel.adj.max_request_body_size - 1
            length = self.request.content_length
            size = f"of {length} bytes " if length > limit else ""
            title = "Payload too large"
            description = f"request body {size}is above the {limit}-byte limit (max_body_bytes)"
        body = json.dumps({"title": title, "description": description}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """A waitress connection whose own refusals answer JSON."""

    error_task_class = _ErrorAnswer


def _close_app(app: App, executor: Executor | None, deadline: list[float]) -> None:
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


def _dask_client(address: str) -> distributed.Client:
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


# -- catalog -------------------------------------------------------------------------------


def _list_catalog(args: argparse.Namespace) -> int:
    from mlserver.catalog import ENTRIES

    rows = [("NAME", "ESTIMATOR", "KIND", "PATCH")]
    rows += [(e.name, e.import_path, e.kind, e.update or "-") for e in ENTRIES]
    name, estimator, kind = (max(len(row[i]) for row in rows) for i in range(3))
    for row in rows:
        print(f"{row[0]:<{name}}  {row[1]:<{estimator}}  {row[2]:<{kind}}  {row[3]}")
    return 0


# -- entry point ---------------------------------------------------------------------------


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ml-server")
    except metadata.PackageNotFoundError:
        return "unknown"


def _say(stream: TextIO, message: str) -> None:
    """One line for people, flushed so a supervising process sees it at once."""
    try:
        stream.write(f"{SAY} {' '.join(message.split())}\n")
        stream.flush()
    except BrokenPipeError:
        _reader_gone(stream)


def _reader_gone(stream: TextIO) -> None:
    """Whoever read `stream` is gone (`| head`, a supervisor that closed the pipe): it now
    writes to the null device, so that nothing (Python's flush at exit included) raises
    again, and the server goes on."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, stream.fileno())
    os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ml-server`; returns the exit code (2 for anything the user can fix)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except ConfigurationError as exc:
        log.debug("event=startup_failed", exc_info=True)
        _say(sys.stderr, f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        return 128 + signal.SIGINT
    except BrokenPipeError:  # e.g. `ml-server catalog | head -1`: the rest is not wanted
        _reader_gone(sys.stdout)
        return 0


if __name__ == "__main__":
    sys.exit(main())
