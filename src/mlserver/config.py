"""Server settings: every default lives here, and only `Settings.from_env` reads the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlserver.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "MLSERVER_"


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

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or (value == 0 and field.name in _MAY_BE_ZERO):
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
        changes: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            kind = {"int": int, "float": float, "bool": _boolean}[str(field.type)]
            try:
                changes[field.name] = kind(raw)
            except ValueError:
                raise ConfigurationError(
                    f"{ENV_PREFIX}{field.name.upper()} must be a {field.type}, got {raw!r}"
                ) from None
        return cls(**changes)  # type: ignore[arg-type]


_MAY_BE_ZERO = frozenset({"freshness_seconds", "max_queued_jobs"})


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
