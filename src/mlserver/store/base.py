"""The persistence contract: versions of (model, key), their status, blob and metadata."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Artifact", "Claim", "Status", "Store", "Version"]


class Status(str, enum.Enum):
    """Lifecycle of one version: RUNNING, then FINISHED or FAILED, never back."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Version:
    """One stored version, without its blob (load that with `Store.load_blob`)."""

    id: int
    model: str
    key: str
    version: int
    status: Status
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    serializer: str | None = None
    sha256: str | None = None
    #: "<key id>:<hex HMAC>" of the blob when the server signs what it stores (mlserver.signing).
    signature: str | None = None
    size: int | None = None
    error: str | None = None
    worker: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """Outcome of asking to train: the newest version, and whether this call created it."""

    version: Version
    created: bool


@dataclass(frozen=True)
class Artifact:
    """A fitted model as bytes, ready for `Store.finish`."""

    blob: bytes
    sha256: str
    serializer: str
    metadata: Mapping[str, Any]


class Store(ABC):
    """Versions of fitted models. Implementations must be safe to call from many threads and,
    where they share a database, from many processes: the at-most-one-RUNNING rule is the
    store's to enforce, atomically.
    """

    @abstractmethod
    def claim(
        self, model: str, key: str, *, worker: str, lease_seconds: float, retrain: bool
    ) -> Claim:
        """Start a new RUNNING version unless the newest is RUNNING, or FINISHED without
        `retrain`; then return that one with `created=False`."""

    @abstractmethod
    def claim_update(
        self,
        model: str,
        key: str,
        *,
        worker: str,
        lease_seconds: float,
        base_id: int | None = None,
    ) -> tuple[Version, Version]:
        """Start a RUNNING version that updates the newest FINISHED one; return (new, base).

        With `base_id`, only while that version is still the newest FINISHED one: what the
        caller checked (schema, library skew) is then what the job updates.

        Raises KeyNotFound without versions, NotReady while one is RUNNING or none FINISHED,
        StaleBase if another version finished after `base_id`.
        """

    @abstractmethod
    def finish(self, version_id: int, artifact: Artifact, signature: str | None = None) -> bool:
        """Record a fitted model (and its signature, stored as given); False (and nothing
        written) if the version is gone or no longer RUNNING, e.g. deleted while it trained."""

    @abstractmethod
    def fail(self, version_id: int, error: str) -> bool:
        """Mark a RUNNING version FAILED; False if it is gone or no longer RUNNING."""

    @abstractmethod
    def heartbeat(self, worker: str, lease_seconds: float) -> int:
        """Extend the lease of every version `worker` is running; returns how many."""

    @abstractmethod
    def expire(self, *, dead_workers: tuple[str, ...] = ()) -> int:
        """Mark FAILED ("interrupted") every RUNNING version whose lease has expired or whose
        worker is in `dead_workers`; returns how many."""

    @abstractmethod
    def running_workers(self) -> list[str]:
        """Workers that hold a RUNNING version, to check which of them are still alive."""

    @abstractmethod
    def newest(self, model: str, key: str, *, finished: bool = False) -> Version | None:
        """The newest version of a key (the newest FINISHED one with `finished`)."""

    @abstractmethod
    def keys(self, model: str) -> list[Version]:
        """The newest version of every key of `model`, in the order those were created."""

    @abstractmethod
    def load_blob(self, version: Version) -> bytes:
        """The bytes of a FINISHED version, checked against its sha256 (IntegrityError)."""

    @abstractmethod
    def delete(self, model: str, key: str) -> int:
        """Delete every version of a key; returns how many were deleted."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreError unless the database answers."""

    def resign(self, version_id: int, old: str | None, new: str) -> bool:
        """Replace a version's signature `old` by `new` (signatures of an older form are
        re-signed when they verify); False if it no longer has `old`. Stores that cannot
        keep the old form for good."""
        return False

    def error_counts(self) -> Mapping[str, int]:
        """Failures so far, by operation name, for metrics; stores that do not count give {}."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    @abstractmethod
    def versions(self, model: str, key: str) -> list[Version]:
        """Every version of a key, newest first (empty without any): what a key's history
        holds, for listings and for checks that must see past the newest version."""
