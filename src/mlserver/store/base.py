"""The persistence contract: versions of (model, key), their status, blob and metadata."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "PROMOTE",
    "SERVED",
    "Artifact",
    "Claim",
    "Page",
    "Status",
    "Store",
    "StoredData",
    "Version",
]

#: The alias every key with a FINISHED version has: what a predict without `version` or
#: `alias` runs.
SERVED = "served"
#: When a version that finishes becomes `served` (see `Store.finish`).
PROMOTE = ("always", "if-better", "never")


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
    #: Scores and the promotion decision: {"validation": {...}, "prequential": {...},
    #: "promoted": bool, "reason": str}; {} when none (and for versions stored by 0.1.0).
    metrics: Mapping[str, Any] = field(default_factory=dict)
    #: The aliases that point at this version, sorted; filled in by `Store.version` and
    #: `Store.versions` only (other reads leave it empty).
    aliases: tuple[str, ...] = ()
    #: How many times its job was started (1 unless a lost job was run again).
    attempts: int = 1
    #: Where it comes from: {"data": sha256|None, "rows", "columns", "parent": n|None,
    #: "kind": "fit"|"update"|"refit"|"import", "source": n|None}; {} for versions stored
    #: before lineage was recorded (and for a RUNNING one until its inputs are recorded).
    lineage: Mapping[str, Any] = field(default_factory=dict)
    #: What its job needs to run again, written with its inputs (see `Store.record_inputs`):
    #: {"kind", "modkwargs", "algkwargs", "validation", "scoring", "promote", "name",
    #: "base": n|None}; {} when its inputs are not stored (then it is never run again).
    job: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of a listing, and the cursor of the next page (None on the last)."""

    items: list[Version]
    next: Any = None


@dataclass(frozen=True)
class Claim:
    """Outcome of asking to train: the newest version, and whether this call created it."""

    version: Version
    created: bool


@dataclass(frozen=True)
class StoredData:
    """One encoded training dataset (mlserver.frames.stored), as the store keeps it: once
    per distinct content, named by the content's sha256."""

    sha256: str
    blob: bytes
    #: sha256 of `blob` itself, checked when it is read back.
    checksum: str
    format: str
    rows: int
    columns: int
    #: Bytes of the decoded frames in memory, to compare with `len(blob)`.
    raw_bytes: int


@dataclass(frozen=True)
class Artifact:
    """A fitted model as bytes, ready for `Store.finish`."""

    blob: bytes
    sha256: str
    serializer: str
    metadata: Mapping[str, Any]
    #: Scores found while training ({"validation": ...} or {"prequential": ...}).
    metrics: Mapping[str, Any] = field(default_factory=dict)


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
    def finish(
        self,
        version_id: int,
        artifact: Artifact,
        signature: str | None = None,
        *,
        promote: str = "always",
        keep_versions: int = 0,
    ) -> bool:
        """Record a fitted model (and its signature, stored as given); False (and nothing
        written) if the version is gone or no longer RUNNING, e.g. deleted or cancelled while
        it trained.

        In the same transaction: decide whether the version becomes `served` (`promote`, one
        of PROMOTE; the first FINISHED version of a key always does), store its metrics with
        `"promoted"` and `"reason"`, and with `keep_versions` > 0 delete the oldest versions
        beyond the newest `keep_versions`, never one an alias points at nor one RUNNING.
        `if-better` promotes when the version's `metrics.validation.score` is at least the
        served one's under the same scoring, or when either has no score.
        """

    @abstractmethod
    def fail(self, version_id: int, error: str) -> bool:
        """Mark a RUNNING version FAILED; False if it is gone or no longer RUNNING."""

    @abstractmethod
    def heartbeat(self, worker: str, lease_seconds: float) -> int:
        """Extend the lease of every version `worker` is running; returns how many."""

    @abstractmethod
    def expire(self, *, dead_workers: tuple[str, ...] = (), max_attempts: int = 1) -> int:
        """Mark FAILED ("interrupted") every lost RUNNING version (lease expired, or worker in
        `dead_workers`) that cannot run again: its inputs are not stored (`job` empty) or it
        has run `max_attempts` times. Returns how many. Lost versions that can run again stay
        RUNNING for `lost` and `adopt`."""

    @abstractmethod
    def lost(self, *, dead_workers: tuple[str, ...] = (), max_attempts: int = 1) -> list[Version]:
        """Lost RUNNING versions that can run again (inputs stored, fewer than
        `max_attempts` attempts), oldest first, with `job` and `lineage`."""

    @abstractmethod
    def adopt(
        self,
        version_id: int,
        *,
        worker: str,
        lease_seconds: float,
        dead_workers: tuple[str, ...] = (),
    ) -> Version | None:
        """Take over a lost RUNNING version for `worker` (new lease, `attempts` + 1), in one
        conditional write: of several processes adopting it at once, one gets the Version,
        the others None (as do versions no longer lost)."""

    @abstractmethod
    def record_inputs(
        self,
        version_id: int,
        *,
        lineage: Mapping[str, Any],
        job: Mapping[str, Any],
        steps: tuple[str, ...] = (),
        datasets: tuple[StoredData, ...] = (),
    ) -> bool:
        """Record a RUNNING version's lineage and, with `steps`, what it needs to run again:
        the datasets it learns from in training order (a fit's data, then each update's),
        by sha256. `datasets` are those of `steps` not stored yet; a step neither stored nor
        given raises KeyNotFound (it was deleted meanwhile: encode it and call again). One
        transaction; False (nothing written) if the version is gone or no longer RUNNING."""

    @abstractmethod
    def stored_datasets(self, shas: tuple[str, ...]) -> set[str]:
        """Which of `shas` are stored (so that a caller encodes only the others)."""

    @abstractmethod
    def steps(self, version_id: int) -> tuple[str, ...]:
        """The datasets a version learnt from, in training order (() when not stored)."""

    @abstractmethod
    def load_dataset(self, sha256: str) -> StoredData:
        """A stored dataset, its blob checked against its checksum (IntegrityError);
        KeyNotFound if it is not stored."""

    @abstractmethod
    def data_usage(self) -> tuple[int, int, int]:
        """(datasets, bytes stored, bytes they decode to) over the whole store."""

    @abstractmethod
    def running_workers(self) -> list[str]:
        """Workers that hold a RUNNING version, to check which of them are still alive."""

    @abstractmethod
    def newest(self, model: str, key: str, *, finished: bool = False) -> Version | None:
        """The newest version of a key (the newest FINISHED one with `finished`)."""

    @abstractmethod
    def keys(
        self,
        model: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        status: Status | None = None,
        contains: str | None = None,
    ) -> Page:
        """The newest version of each key of `model`, keys in ascending order: at most
        `limit` (all without), only keys above `after`, only those whose newest version has
        `status`, only keys holding the substring `contains`. `Page.next` is the last key
        listed when more follow, else None."""

    @abstractmethod
    def key_counts(self, model: str | None = None) -> dict[str, dict[str, int]]:
        """Model -> status -> how many of its keys have a newest version of that status
        (every model in the store, or only `model`); models without keys are left out."""

    @abstractmethod
    def recent(
        self, status: Status, *, models: Iterable[str] | None = None, limit: int = 50
    ) -> list[Version]:
        """The newest `limit` versions with `status` (of `models` only, when given), newest
        first, without aliases: what a dashboard's job list shows."""

    @abstractmethod
    def load_blob(self, version: Version) -> bytes:
        """The bytes of a FINISHED version, checked against its sha256 (IntegrityError)."""

    @abstractmethod
    def delete(self, model: str, key: str) -> int:
        """Delete every version of a key; returns how many were deleted. A dataset no
        remaining version learnt from is deleted with them (here, in `delete_version` and
        in `finish`'s pruning)."""

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

    def prepare(self) -> None:  # noqa: B027 - optional hook, nothing to prepare by default
        """Create or migrate the store's schema now (at start-up, rather than on the first
        request), raising ConfigurationError for a schema newer than this release's."""

    @abstractmethod
    def versions(
        self, model: str, key: str, *, limit: int | None = None, before: int | None = None
    ) -> Page:
        """Versions of a key, newest first, with their aliases: at most `limit` (all
        without), only those numbered below `before`. `Page.next` is the `before` of the next
        page (the last number listed) when more follow, else None; no versions: empty."""

    @abstractmethod
    def version(self, model: str, key: str, number: int) -> Version | None:
        """Version `number` of a key, with its aliases; None if there is none."""

    @abstractmethod
    def aliases(self, model: str, key: str) -> dict[str, int]:
        """Alias name -> version number, for one key ({} without any)."""

    @abstractmethod
    def resolve(self, model: str, key: str, alias: str = SERVED) -> Version | None:
        """The version `alias` points at (one query: this is on predict's path when its
        cache is cold); None if the key has no such alias."""

    @abstractmethod
    def set_alias(self, model: str, key: str, alias: str, number: int) -> Version:
        """Point `alias` at version `number` (creating or moving it); returns that version.

        Raises KeyNotFound if the key has no version `number`, NotReady unless it is
        FINISHED.
        """

    @abstractmethod
    def delete_alias(self, model: str, key: str, alias: str) -> bool:
        """Remove an alias; False if the key had none of that name. `served` is refused
        (Conflict): every key with a FINISHED version has it."""

    @abstractmethod
    def delete_version(self, model: str, key: str, number: int) -> Version:
        """Delete version `number`, or cancel it if it is RUNNING: it becomes FAILED with
        error "cancelled" (and `finish` will not store its result). Returns the version as
        it was before (status RUNNING for a cancel).

        Raises KeyNotFound if there is no such version, Conflict if an alias points at it.
        """
