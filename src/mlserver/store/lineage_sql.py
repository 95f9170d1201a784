"""SQLStore's lineage: stored training data (one row per distinct content, linked to the
versions that learnt from it), the inputs of a job, and lost jobs taken over to run again.
Mixed into SQLStore (mlserver.store.sql), whose plumbing it uses.

NOTE: a dataset must never be linked while it is being deleted. Both sides lock the dataset's
row first (`FOR UPDATE` on PostgreSQL; SQLite transactions hold the database's write lock)
and look at the links only after that, in a statement of their own: under READ COMMITTED each
statement sees what committed before it, so a link committed while we waited is seen. Locks
are taken versions first, then datasets in sha256 order, in every transaction here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import orjson
import peewee

from mlserver.errors import IntegrityError, KeyNotFound, StoreError
from mlserver.store._common import guarded, now
from mlserver.store.base import Status, StoredData, Version

__all__ = ["LineageQueries"]


def _json(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value, default=str).decode()


class LineageQueries:
    """The datasets, inputs and re-run part of SQLStore."""

    # Provided by SQLStore.
    _rows: type[peewee.Model]
    _datasets: type[peewee.Model]
    _links: type[peewee.Model]
    _db: peewee.Database

    # -- shared ----------------------------------------------------------------------------

    def _lock_dataset(self, sha: str) -> bool:
        datasets = self._datasets
        query = datasets.select(datasets.sha256).where(datasets.sha256 == sha)
        return self._locked(query).first() is not None

    def _forget(self, version_ids: Iterable[int]) -> int:
        """Unlink deleted versions from their datasets and delete the datasets no version
        learnt from any more (in the caller's transaction); returns how many went."""
        ids = list(version_ids)
        if not ids:
            return 0
        links = self._links
        shas = {
            sha for (sha,) in links.select(links.sha256).where(links.version_id.in_(ids)).tuples()
        }
        links.delete().where(links.version_id.in_(ids)).execute()
        gone = 0
        for sha in sorted(shas):
            if not self._lock_dataset(sha):
                continue
            if links.select().where(links.sha256 == sha).exists():
                continue
            gone += self._datasets.delete().where(self._datasets.sha256 == sha).execute()
        return gone

    def _lost(self, dead_workers: tuple[str, ...]) -> peewee.Expression:
        rows = self._rows
        lost = rows.lease_expires < now()
        if dead_workers:
            lost |= rows.worker.in_(list(dead_workers))
        return (rows.status == Status.RUNNING.value) & lost

    def _attempts(self) -> peewee.Expression:
        return peewee.fn.COALESCE(self._rows.attempts, 1)

    # -- Store -----------------------------------------------------------------------------

    @guarded
    def record_inputs(
        self,
        version_id: int,
        *,
        lineage: Mapping[str, Any],
        job: Mapping[str, Any],
        steps: tuple[str, ...] = (),
        datasets: tuple[StoredData, ...] = (),
    ) -> bool:
        rows, links, table = self._rows, self._links, self._datasets
        given = {d.sha256: d for d in datasets}
        with self._blob_session(sum(len(d.blob) for d in datasets)), self._db.atomic():
            query = rows.select(rows.id).where(
                (rows.id == version_id) & (rows.status == Status.RUNNING.value)
            )
            if self._locked(query).first() is None:
                return False
            for sha in sorted(set(steps)):
                if self._lock_dataset(sha):
                    continue
                data = given.get(sha)
                if data is None:
                    raise KeyNotFound(f"dataset {sha} is not stored")
                table.insert(
                    sha256=sha,
                    format=data.format,
                    rows=data.rows,
                    columns=data.columns,
                    raw_bytes=data.raw_bytes,
                    size=len(data.blob),
                    checksum=data.checksum,
                    created=now(),
                    blob=data.blob,
                ).on_conflict_ignore().execute()
                if not self._lock_dataset(sha):  # inserted by another and deleted since
                    raise KeyNotFound(f"dataset {sha} is not stored")
            links.delete().where(links.version_id == version_id).execute()
            if steps:
                links.insert_many(
                    [
                        {"version_id": version_id, "position": i, "sha256": sha}
                        for i, sha in enumerate(steps)
                    ]
                ).execute()
            rows.update(lineage=_json(lineage), job=_json(job) if job else None).where(
                rows.id == version_id
            ).execute()
        return True

    @guarded
    def stored_datasets(self, shas: tuple[str, ...]) -> set[str]:
        if not shas:
            return set()
        table = self._datasets
        with self._session():
            query = table.select(table.sha256).where(table.sha256.in_(list(shas))).tuples()
            return {sha for (sha,) in query}

    @guarded
    def steps(self, version_id: int) -> tuple[str, ...]:
        links = self._links
        with self._session():
            query = (
                links.select(links.sha256)
                .where(links.version_id == version_id)
                .order_by(links.position)
                .tuples()
            )
            return tuple(sha for (sha,) in query)

    @guarded
    def load_dataset(self, sha256: str) -> StoredData:
        table = self._datasets
        with self._session():
            size = table.select(table.size).where(table.sha256 == sha256).scalar()
        if size is None:
            raise KeyNotFound(f"dataset {sha256} is not stored")
        with self._blob_session(size):
            found = table.select().where(table.sha256 == sha256).dicts().first()
        if found is None:
            raise KeyNotFound(f"dataset {sha256} is not stored")
        blob = bytes(found["blob"])
        if hashlib.sha256(blob).hexdigest() != found["checksum"]:
            raise IntegrityError(f"stored dataset {sha256} does not match its checksum")
        return StoredData(
            sha256=sha256,
            blob=blob,
            checksum=found["checksum"],
            format=found["format"],
            rows=found["rows"],
            columns=found["columns"],
            raw_bytes=found["raw_bytes"],
        )

    @guarded
    def data_usage(self) -> tuple[int, int, int]:
        table = self._datasets
        with self._session():
            count, size, raw = (
                table.select(
                    peewee.fn.COUNT(table.sha256),
                    peewee.fn.COALESCE(peewee.fn.SUM(table.size), 0),
                    peewee.fn.COALESCE(peewee.fn.SUM(table.raw_bytes), 0),
                )
                .tuples()
                .first()
            )
        return int(count), int(size), int(raw)

    @guarded
    def lost(self, *, dead_workers: tuple[str, ...] = (), max_attempts: int = 1) -> list[Version]:
        rows = self._rows
        where = self._lost(dead_workers) & rows.job.is_null(False)
        where &= self._attempts() < max_attempts
        with self._session():
            return [
                self._version(row) for row in self._select().where(where).order_by(rows.id).dicts()
            ]

    @guarded
    def adopt(
        self,
        version_id: int,
        *,
        worker: str,
        lease_seconds: float,
        dead_workers: tuple[str, ...] = (),
    ) -> Version | None:
        rows = self._rows
        with self._session(), self._db.atomic():
            updated = (
                rows.update(
                    worker=worker,
                    lease_expires=now() + timedelta(seconds=lease_seconds),
                    attempts=self._attempts() + 1,
                )
                .where((rows.id == version_id) & self._lost(dead_workers))
                .execute()
            )
            if updated != 1:
                return None
            found = self._select().where(rows.id == version_id).dicts().first()
        if found is None:
            raise StoreError("an adopted version vanished within its transaction")
        return self._version(found)
