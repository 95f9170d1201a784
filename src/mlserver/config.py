"""Server settings and the one rule for options: every default lives here, and only
`Settings.from_env` (and `ml-server`, through `read_options`) reads the environment.

An `Option` describes one tunable once: its name gives the flag (`--max-body-bytes`) and the
variable (`MLSERVER_MAX_BODY_BYTES`); `read_options` takes each from its flag, else its
variable, else its default. The `Settings` fields are options too (`settings_options`), so the
command line, the environment and `Settings.from_env` cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlserver.errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "Option",
    "Settings",
    "boolean",
    "read_options",
    "reason_for",
    "settings_options",
]

ENV_PREFIX = "MLSERVER_"


@dataclass(frozen=True)
class Option:
    """One tunable: its flag, its MLSERVER_ variable, its parser and its default, in one place.

    `parse` turns the text of a flag or variable into the value, raising ValueError with a
    reason people can read; `env_error` words a bad variable (`{env}`, `{raw}`, `{reason}`).
    """

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    env_error: str = "{env}: {reason}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def from_env(self, environ: Mapping[str, str]) -> Any:
        """The value of this option's variable; None when it is unset or empty.

        Raises:
            ConfigurationError: the variable does not parse, or is not one of `choices`.
        """
        raw = environ.get(self.env)
        if not raw:  # NOTE: an empty variable counts as unset (compose's `${VAR:-}`)
            return None
        try:
            value = self.parse(raw)
        except ValueError as exc:
            reason = reason_for(exc, raw)
            raise ConfigurationError(
                self.env_error.format(env=self.env, raw=raw, reason=reason)
            ) from None
        if self.choices and value not in self.choices:
            raise ConfigurationError(
                f"{self.env} must be one of {', '.join(self.choices)}, got {raw!r}"
            )
        return value


def read_options(
    options: Iterable[Option], given: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Each option from `given` (its flag), else its environment variable, else its default."""
    values: dict[str, Any] = {}
    for option in options:
        value = given.get(option.name)
        if value is None:
            value = option.from_env(environ)
        values[option.name] = option.default if value is None else value
    return values


def reason_for(exc: ValueError, raw: str) -> str:
    """What was wrong with `raw`, without Python's "invalid literal for int()" wording."""
    text = str(exc)
    return text if text and "invalid literal" not in text else f"not a number: {raw!r}"


@dataclass(frozen=True)
class Settings:
    """Tunables of one app; pass overrides to `create_app` or read them with `from_env`."""

    #: Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = 64 * 1024 * 1024
    #: Most rows of `x` a fit, update or predict takes once decoded (422 above it).
    max_rows: int = 1_000_000
    #: Most columns of `x` a fit, update or predict takes once decoded (422 above it).
    max_columns: int = 10_000
    #: Most cells (rows x columns) of a sparse model output made dense for an answer (422
    #: above it): OneHotEncoder or TfidfTransformer outputs can be far wider than x.
    max_output_cells: int = 10_000_000
    #: Most bytes an Arrow, Parquet or CSV body may declare once decoded: its columns
    #: decompressed, or its cells at 8 bytes each if that is more (422 above it). Checked
    #: from the body's metadata before decoding; what a 64 MiB JSON body can decode to.
    max_decoded_bytes: int = 256 * 1024 * 1024
    #: Threads of the training pool the app owns when no executor is given.
    training_threads: int = 2
    #: Seconds a training job may run, counted from when it gets a training slot (queue time
    #: is bounded by max_queued_jobs instead); then its version is FAILED ("timed out").
    training_timeout_seconds: float = 3600.0
    #: Jobs of this process that may wait for a free training slot; a PUT or PATCH beyond it
    #: is a 503 with Retry-After and stores nothing (0: refuse unless a slot is free). Each
    #: waiting job holds its decoded data in memory, up to max_body_bytes' worth.
    max_queued_jobs: int = 16
    #: Deserialized model versions kept in memory per process.
    model_cache_size: int = 16
    #: Serialized bytes of the cached versions, at most (the newest one always stays).
    model_cache_bytes: int = 2 * 1024 * 1024 * 1024
    #: Seconds a process trusts its memory of a key's newest version; another replica's
    #: retrain, update or delete is served within this bound (0: ask the store every time).
    freshness_seconds: float = 1.0
    #: Seconds a RUNNING version stays claimed without a heartbeat before it counts as interrupted.
    lease_seconds: float = 30.0
    #: Seconds between heartbeats (and sweeps for expired leases); a third of the lease.
    heartbeat_seconds: float = 10.0
    #: Seconds one database call may wait (connecting, locks, a statement, a server that
    #: stopped answering) before it fails and the request answers 503; blob reads and writes
    #: get more time by their size. Also SQLite's busy timeout.
    database_timeout_seconds: float = 5.0
    #: Refuse (409) to serve versions trained with another major.minor of the libraries their
    #: serializer depends on, instead of serving them with a warning.
    refuse_version_skew: bool = False
    #: Versions kept per key: after a version finishes, the oldest beyond the newest N are
    #: deleted, never one an alias points at nor one RUNNING (0: keep every version).
    keep_versions: int = 0
    #: Store the decoded data of every fit and update (once per distinct content), so that
    #: versions can be refitted and jobs a dead process left behind run again.
    store_training_data: bool = True
    #: Largest stored dataset, in bytes once encoded; a larger one is not stored (its
    #: version can then not be refitted nor run again).
    max_stored_data_bytes: int = 1024 * 1024 * 1024
    #: Times a job may start in all: a RUNNING version whose process died runs again on a
    #: live server while it has stored inputs and fewer attempts; then it is FAILED.
    max_attempts: int = 3
    #: Most rows one model call stacks from predicts that wait for the same version and
    #: method while its model is busy (adaptive batching; a larger request runs alone;
    #: 0: off). Nothing waits when nothing is queued.
    max_batch_rows: int = 1024
    #: Milliseconds the request that leads a stacked call waits for more to join it
    #: (0: none; only requests already queued are stacked).
    max_batch_delay_ms: float = 0.0
    #: Largest artifact `PUT /{model}/import` takes, in bytes (413 above it, refused from
    #: its Content-Length before it is read).
    max_import_bytes: int = 1024 * 1024 * 1024
    #: Take joblib and pickle artifacts over HTTP (`PUT /{model}/import`). Loading one runs
    #: whatever code its sender put in it: only for senders as trusted as the server itself.
    allow_pickle_import: bool = False
    #: Types a skops artifact may hold beyond those skops itself trusts, for imports and for
    #: loading skops versions; nothing an artifact names widens it.
    trusted_types: tuple[str, ...] = ()
    #: Serve the dashboard (HTML pages under `/ui`); with auth on it asks for a token.
    ui: bool = True

    def __post_init__(self) -> None:
        trusted = self.trusted_types
        if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
            raise ConfigurationError(f"setting trusted_types must be type names, got {trusted!r}")
        object.__setattr__(self, "trusted_types", tuple(sorted(set(trusted))))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (bool, tuple)) or (value == 0 and field.name in _MAY_BE_ZERO):
                continue
            if value <= 0:
                raise ConfigurationError(f"setting {field.name} must be positive, got {value!r}")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigurationError("heartbeat_seconds must be shorter than lease_seconds")

    def replace(self, **changes: object) -> Settings:
        """A copy with `changes` applied; unknown names raise ConfigurationError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `MLSERVER_<NAME>` variables (e.g. MLSERVER_MAX_BODY_BYTES)."""
        environ = os.environ if environ is None else environ
        return cls(**read_options(settings_options(), {}, environ))


def settings_options() -> tuple[Option, ...]:
    """One Option per Settings field, parsed by the field's type; a field added to Settings
    gets a flag and a variable even before it gets help text."""
    defaults = Settings()
    options = []
    for field in dataclasses.fields(Settings):
        kind = str(getattr(field.type, "__name__", field.type))
        options.append(
            Option(
                field.name,
                _PARSERS[kind],
                getattr(defaults, field.name),
                _SETTING_HELP.get(field.name, f"Settings.{field.name}"),
                metavar=_metavar(field.name, kind),
                env_error=f"{{env}} must be {_KINDS[kind]}, got {{raw!r}}",
            )
        )
    return tuple(options)


def _metavar(name: str, kind: str) -> str:
    if name.endswith("_seconds"):
        return "SECONDS"
    return "NAMES" if kind == "tuple[str, ...]" else "N"


def names(raw: str) -> tuple[str, ...]:
    """Comma-separated names (e.g. `mymodule.MyTransformer,other.Type`), blanks dropped."""
    return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))


# Help for the Settings fields, as `ml-server serve --help` shows it.
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
    "keep_versions": "versions kept per key, aliased ones always (0: keep every version)",
    "store_training_data": "store each fit's and update's data, for refits and re-runs",
    "max_stored_data_bytes": "largest training dataset stored, in bytes once encoded",
    "max_attempts": "times a job whose process died may start in all",
    "max_batch_rows": "most rows one model call stacks from waiting predicts (0: no batching)",
    "max_batch_delay_ms": "milliseconds a stacked call waits for more predicts to join it",
    "max_import_bytes": "largest artifact PUT /{model}/import takes, in bytes (413 above it)",
    "allow_pickle_import": "take joblib and pickle artifacts over HTTP: runs the sender's code",
    "trusted_types": "types skops artifacts may hold beyond skops' own trusted ones",
    "ui": "serve the dashboard at /ui (--no-ui turns it off)",
}
_MAY_BE_ZERO = frozenset(
    {
        "freshness_seconds",
        "max_queued_jobs",
        "keep_versions",
        "max_batch_rows",
        "max_batch_delay_ms",
    }
)


def boolean(raw: str) -> bool:
    """true/false, yes/no, on/off or 1/0, in any case."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": boolean,
    "tuple[str, ...]": names,
}
_KINDS = {
    "int": "an int",
    "float": "a float",
    "bool": "a bool",
    "tuple[str, ...]": "comma-separated names",
}
