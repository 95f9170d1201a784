"""The `serve` options: the table of what only the command takes, and the one loop that turns
it and the `Settings` fields into flags (`add_flags`) and values (`read`).

Both kinds are `mlserver.config.Option`s, read by the same rule as `Settings.from_env`: a flag
wins over its MLSERVER_ variable, the variable over the default.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlserver.config import (
    ENV_PREFIX,
    Option,
    Settings,
    boolean,
    read_options,
    reason_for,
    settings_options,
)
from mlserver.errors import ConfigurationError
from mlserver.http.auth import load_token_file, parse_tokens
from mlserver.signing import Signer, parse_signing_keys

__all__ = [
    "SERVE_OPTIONS",
    "add_flags",
    "read",
    "security",
    "signer",
    "warn_if_unsigned",
]

log = logging.getLogger("mlserver.cli")

LOG_LEVELS = ("debug", "info", "warning", "error")
EXECUTORS = ("thread", "process", "dask")


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


#: The options of `serve` that are not Settings fields, in the order `--help` lists them.
SERVE_OPTIONS = (
    Option("store", str, "sqlite:///mlserver.db", "database URL of the model store", "URL"),
    Option("host", str, "127.0.0.1", "interface to listen on; 0.0.0.0 for all", "HOST"),
    Option("port", _port, 8080, "TCP port; 0 picks a free one", "PORT"),
    Option("threads", _positive_int, 8, "request threads (per worker process)", "N"),
    Option(
        "workers",
        _positive_int,
        1,
        "server processes; above 1 they run under gunicorn (pip install 'ml-server[gunicorn]'), "
        "each with its own app, model cache and training pool",
        "N",
    ),
    Option(
        "executor",
        str,
        "thread",
        "where training jobs run: a thread pool, a pool of --training-threads processes, or "
        "the Dask cluster of --scheduler",
        choices=EXECUTORS,
    ),
    Option(
        "scheduler",
        str,
        None,
        "address of the Dask scheduler, e.g. tcp://scheduler:8786; required with --executor "
        "dask (connect timeout: Dask's distributed.comm.timeouts.connect)",
        "ADDRESS",
    ),
    Option(
        "graceful_timeout",
        _seconds,
        30.0,
        "seconds in-flight requests and running training jobs get to finish after "
        "SIGTERM/SIGINT; jobs still running then are left to their lease",
        "SECONDS",
    ),
    Option("log_level", str.lower, "warning", "log level", choices=LOG_LEVELS),
    Option(
        "token_file",
        _configured(load_token_file),
        None,
        "file of accepted API tokens, one '<sha256-hex> <scope>[,<scope>...]' per line "
        "(scopes: predict, train, admin); turns on auth",
        "PATH",
    ),
    Option(
        "tokens",
        _configured(parse_tokens),
        None,
        "accepted API tokens as in --token-file, entries separated by ';' (merged with "
        "--token-file's); turns on auth",
        "ENTRIES",
    ),
    Option(
        "signing_keys",
        _configured(_signing_keys),
        None,
        "keys that sign stored models, 'id:secret' entries separated by ',', the first signs, "
        "all verify; prefer the variable or --signing-keys-file (flags show in ps)",
        "ID:SECRET,...",
    ),
    Option(
        "signing_keys_file",
        _configured(_read_signing_keys),
        None,
        "file of signing keys, one 'id:secret' per line, the first signs",
        "PATH",
    ),
)


def add_flags(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """One flag per option, its help naming its variable and its default."""
    for option in options:
        if option.parse is boolean:
            parser.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                help=f"{option.help} [env {option.env}=true|false; "
                f"default {str(option.default).lower()}]",
            )
        else:
            shown = "none" if option.default in (None, ()) else option.default
            parser.add_argument(
                option.flag,
                dest=option.name,
                type=_for_argparse(option.parse),
                choices=option.choices,
                metavar=option.metavar,
                help=f"{option.help} [env {option.env}; default {shown}]",
            )


def _for_argparse(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` with its ValueError text shown by argparse (it hides ValueError messages)."""

    def converted(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(reason_for(exc, raw)) from None

    converted.__name__ = getattr(parse, "__name__", "value")
    return converted


def read(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[dict[str, Any], Settings]:
    """The `serve` options and the Settings, each from its flag, variable or default.

    Raises:
        ConfigurationError: a bad variable or setting, or options that do not go together.
    """
    given = vars(args)
    values = read_options(SERVE_OPTIONS, given, environ)
    values["target"] = args.target or environ.get(ENV_PREFIX + "TARGET")
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
    return values, Settings(**read_options(settings_options(), given, environ))


def security(options: Mapping[str, Any]) -> dict[str, Any]:
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


def signer(keys_file: str | None, environ: Mapping[str, str]) -> Signer | None:
    """The signer of a command that writes to the store besides the server (`import`):
    its --signing-keys-file, else the variables `serve` reads; None when unsigned."""
    options = {o.name: o for o in SERVE_OPTIONS if o.name in ("signing_keys", "signing_keys_file")}
    given = {}
    if keys_file is not None:
        try:
            given["signing_keys_file"] = options["signing_keys_file"].parse(keys_file)
        except ValueError as exc:
            raise ConfigurationError(f"--signing-keys-file: {exc}") from None
    values = read_options(options.values(), given, environ)
    return security({**values, "token_file": None, "tokens": None})["signing_keys"]


def warn_if_unsigned(options: Mapping[str, Any]) -> None:
    """Once serving (a start-up error stays one line): say that signing is off."""
    if not (options["signing_keys"] or options["signing_keys_file"]):
        log.warning(
            "event=signing_off detail=%r",
            "signing off: stored models load without a signature check, so whoever can "
            "write the database can run code here; set MLSERVER_SIGNING_KEYS",
        )
