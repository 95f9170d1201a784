"""SQLStore: versions in SQLite or PostgreSQL through peewee, one row per version."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import orjson
import peewee

from mlserver.config import Settings
from mlserver.errors import (
    ConfigurationError,
    IntegrityError,
    KeyNotFound,
    NotReady,
    StaleBase,
)
from mlserver.store import migrations
from mlserver.store._common import guarded as _guarded
from mlserver.store._common import names as _names
from mlserver.store._common import now as _now
from mlserver.store._tables import (
    make_alias_table,
    make_dataset_table,
    make_link_table,
    make_schema_table,
    make_version_table,
    version_from_row,
)
from mlserver.store.base import SERVED, Artifact, Claim, Status, Store, Version
from mlserver.store.database import PostgresPool, open_database
from mlserver.store.deadlines import Deadlines
from mlserver.store.lineage_sql import LineageQueries
from mlserver.store.promotion import check_promote, decide
from mlserver.store.registry_sql import RegistryQueries

__all__ = ["SQLStore"]

INTERRUPTED = "interrupted: the process running this job stopped before it finished"


def _json(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value, default=str).decode()


#: The slowest transfer a blob statement is given time for, on top of the timeout (a 200 MiB
#: blob took 21 s to store on PostgreSQL on a loaded 2-core machine: ~10 MiB/s).
_BLOB_BYTES_PER_SECOND = 4 * 1024 * 1024


class SQLStore(RegistryQueries, LineageQueries, Store):
    """A Store on any database peewee's `playhouse.db_url` reads; the schema is created or
    migrated (mlserver.store.migrations) by `prepare` or on first use. Connections come from
    a pool on every backend; SQLite runs in WAL mode."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = Settings.database_timeout_seconds,
        max_connections: int = 32,
        busy_timeout: float | None = None,
    ) -> None:
        #: Seconds one call may wait on the database (connecting, locks, statements) before
        #: it fails with StoreError; `busy_timeout` is its older name.
        self.timeout = float(timeout if busy_timeout is None else busy_timeout)
        if self.timeout <= 0:
            raise ConfigurationError(f"store timeout must be positive, got {self.timeout!r}")
        self._deadlines = Deadlines()
        try:
            self._db = open_database(url, self.timeout, max_connections, self._deadlines)
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(f"bad store URL: {exc}") from None
        #: Calls on PostgreSQL are watched (see Deadlines); SQLite waits at most its busy timeout.
        self._watched = isinstance(self._db, PostgresPool)
        self.url = url
        self._rows = make_version_table(self._db)
        self._aliases = make_alias_table(self._db)
        self._schema = make_schema_table(self._db)
        self._datasets = make_dataset_table(self._db)
        self._links = make_link_table(self._db)
        #: The schema version this store found when it prepared the database (None: fresh),
        #: looked at under the migration lock.
        self.found_schema_version: int | None = None
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._errors: collections.Counter[str] = collections.Counter()
        self._errors_lock = threading.Lock()
        # Every column but the blob: listings and status reads never drag model bytes along.
        self._meta_columns = [f for f in self._rows._meta.sorted_fields if f.name != "blob"]
        self._newest_sql = {finished: self._compile_newest(finished) for finished in (False, True)}
        self._resolve_sql = self._compile_resolve()
        self._keys_sql = {}

    def __repr__(self) -> str:
        return f"SQLStore({urlparse(self.url)._replace(netloc='…').geturl()!r})"

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """One connection per call, returned (or closed) at the end: nothing leaks per thread.
        Every wait on it keeps the call's deadline."""
        if not self._schema_ready:
            self._create_schema()
        with self._connection():
            yield

    @contextlib.contextmanager
    def _connection(self) -> Iterator[None]:
        with self._db.connection_context():
            if not self._watched:
                yield
                return
            with self._deadlines.watching(self._db.connection()):
                yield

    @contextlib.contextmanager
    def _blob_session(self, size: int) -> Iterator[None]:
        """A session whose statements move a blob of `size` bytes: they get more time, on
        the client and (in a transaction of their own) on the server."""
        extra = size / _BLOB_BYTES_PER_SECOND
        self._deadlines.extend(extra)
        with self._session():
            if not self._watched:
                yield
                return
            with self._db.atomic():
                milliseconds = int((self.timeout + extra) * 1000)
                self._db.execute_sql(f"SET LOCAL statement_timeout = {milliseconds}")
                yield

    def _create_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._connection():
                self.found_schema_version = migrations.prepare(
                    self._db,
                    [self._rows, self._aliases, self._schema, self._datasets, self._links],
                )
            self._schema_ready = True

    def _count_error(self, operation: str) -> None:
        with self._errors_lock:
            self._errors[operation] += 1

    #: A Version from column values (see version_from_row).
    _version = staticmethod(version_from_row)

    def _select(self) -> peewee.ModelSelect:
        return self._rows.select(*self._meta_columns)

    def _compile_newest(self, finished: bool) -> str:
        rows = self._rows
        where = (rows.model == "") & (rows.key == "")
        if finished:
            where &= rows.status == Status.FINISHED.value
        sql, _ = self._select().where(where).order_by(rows.version.desc()).limit(1).sql()
        return sql

    def _newest_row(self, model: str, key: str, finished: bool = False) -> dict[str, Any] | None:
        """The newest row's columns (blob excluded), or None.

        PERF: this runs on every predict; its SQL is built once per store, not per call.
        """
        params: list[Any] = [model, key, Status.FINISHED.value] if finished else [model, key]
        cursor = self._db.execute_sql(self._newest_sql[finished], [*params, 1])
        found = cursor.fetchone()
        return None if found is None else self._row_dict(found)

    def _insert_running(
        self, model: str, key: str, number: int, worker: str, lease_seconds: float
    ) -> Any:
        now = _now()
        return self._rows.create(
            model=model,
            key=key,
            version=number,
            status=Status.RUNNING.value,
            created=now,
            started=now,
            lease_expires=now + timedelta(seconds=lease_seconds),
            worker=worker,
            attempts=1,
        )

    # -- Store ---------------------------------------------------------------------------------

    @_guarded
    def claim(
        self, model: str, key: str, *, worker: str, lease_seconds: float, retrain: bool
    ) -> Claim:
        _names(model, key)
        with self._session():
            try:
                with self._db.atomic():
                    newest = self._newest_row(model, key)
                    if newest is not None and (
                        newest["status"] == Status.RUNNING.value
                        or (newest["status"] == Status.FINISHED.value and not retrain)
                    ):
                        return Claim(self._version(newest), created=False)
                    number = 1 if newest is None else newest["version"] + 1
                    row = self._insert_running(model, key, number, worker, lease_seconds)
                    return Claim(self._version(row.__data__), created=True)
            except peewee.IntegrityError:
                # Another process claimed the key between our read and our insert.
                return Claim(self._version(self._newest_row(model, key)), created=False)

    @_guarded
    def claim_update(
        self,
        model: str,
        key: str,
        *,
        worker: str,
        lease_seconds: float,
        base_id: int | None = None,
    ) -> tuple[Version, Version]:
        _names(model, key)
        with self._session():
            try:
                with self._db.atomic():
                    newest = self._newest_row(model, key)
                    if newest is None:
                        raise KeyNotFound(f"model-key {key!r} has no versions of {model!r}")
                    if newest["status"] == Status.RUNNING.value:
                        raise NotReady(
                            f"version {newest['version']} of {key!r} is still RUNNING", "RUNNING"
                        )
                    # NOTE: an update learns on from what predictions use, which may be
                    # older than the newest FINISHED version (promote=never, a moved alias).
                    base = self._resolve_row(model, key, SERVED)
                    if base is None:
                        raise NotReady(
                            f"no version of {key!r} has finished; the newest is {newest['status']}",
                            newest["status"],
                        )
                    if base_id is not None and base["id"] != base_id:
                        raise StaleBase(
                            f"version {base['version']} of {key!r} is served now, not the one "
                            "this update was checked against"
                        )
                    row = self._insert_running(
                        model, key, newest["version"] + 1, worker, lease_seconds
                    )
                    return self._version(row.__data__), self._version(base)
            except peewee.IntegrityError:
                raise NotReady(f"another job of {key!r} started just now", "RUNNING") from None

    @_guarded
    def finish(
        self,
        version_id: int,
        artifact: Artifact,
        signature: str | None = None,
        *,
        promote: str = "always",
        keep_versions: int = 0,
    ) -> bool:
        check_promote(promote, keep_versions)
        rows = self._rows
        blob = artifact.blob
        with self._blob_session(len(blob)), self._db.atomic():
            query = self._select().where(
                (rows.id == version_id) & (rows.status == Status.RUNNING.value)
            )
            found = self._locked(query).dicts().first()
            if found is None:
                return False
            model, key = found["model"], found["key"]
            older = self._lock_older(model, key, keep_versions) if keep_versions else []
            served = self._resolve_row(model, key, SERVED)
            promoted, reason = decide(
                promote,
                artifact.metrics,
                None
                if served is None
                else (served["version"], orjson.loads(served["metrics"] or "{}")),
            )
            metrics = {**artifact.metrics, "promoted": promoted, "reason": reason}
            rows.update(
                status=Status.FINISHED.value,
                finished=_now(),
                lease_expires=None,
                blob=blob,
                sha256=artifact.sha256,
                signature=signature,
                size=len(blob),
                serializer=artifact.serializer,
                metadata=_json(artifact.metadata),
                metrics=_json(metrics),
            ).where(rows.id == version_id).execute()
            if promoted:
                self._point(model, key, SERVED, found["version"])
            if older:
                self._prune(model, key, older)
        return True

    @_guarded
    def resign(self, version_id: int, old: str | None, new: str) -> bool:
        rows = self._rows
        with self._session():
            updated = (
                rows.update(signature=new)
                .where(
                    (rows.id == version_id)
                    & (rows.signature == old)
                    & (rows.status == Status.FINISHED.value)
                )
                .execute()
            )
        return updated == 1

    @_guarded
    def fail(self, version_id: int, error: str) -> bool:
        rows = self._rows
        # NOTE: an error message may quote what a client sent, NULs included, which
        # PostgreSQL text refuses: shown escaped, alike on every backend.
        error = error.replace("\x00", "\\x00")
        with self._session():
            updated = (
                rows.update(
                    status=Status.FAILED.value, finished=_now(), lease_expires=None, error=error
                )
                .where((rows.id == version_id) & (rows.status == Status.RUNNING.value))
                .execute()
            )
        return updated == 1

    @_guarded
    def heartbeat(self, worker: str, lease_seconds: float) -> int:
        rows = self._rows
        with self._session():
            return (
                rows.update(lease_expires=_now() + timedelta(seconds=lease_seconds))
                .where((rows.worker == worker) & (rows.status == Status.RUNNING.value))
                .execute()
            )

    @_guarded
    def expire(self, *, dead_workers: tuple[str, ...] = (), max_attempts: int = 1) -> int:
        rows = self._rows
        # NOTE: lost versions that can run again are left to `lost` and `adopt`.
        final = rows.job.is_null() | (self._attempts() >= max_attempts)
        with self._session():
            return (
                rows.update(
                    status=Status.FAILED.value,
                    finished=_now(),
                    lease_expires=None,
                    error=INTERRUPTED,
                )
                .where(self._lost(dead_workers) & final)
                .execute()
            )

    @_guarded
    def running_workers(self) -> list[str]:
        rows = self._rows
        with self._session():
            query = (
                rows.select(rows.worker)
                .where(rows.status == Status.RUNNING.value)
                .distinct()
                .tuples()
            )
            return [worker for (worker,) in query if worker]

    @_guarded
    def newest(self, model: str, key: str, *, finished: bool = False) -> Version | None:
        _names(model, key)
        with self._session():
            row = self._newest_row(model, key, finished=finished)
            return None if row is None else self._version(row)

    @_guarded
    def load_blob(self, version: Version) -> bytes:
        rows = self._rows
        with self._blob_session(version.size or 0):
            found = (
                rows.select(rows.blob, rows.sha256)
                .where((rows.id == version.id) & (rows.status == Status.FINISHED.value))
                .tuples()
                .first()
            )
        if found is None or found[0] is None:
            raise KeyNotFound(
                f"version {version.version} of {version.key!r} was deleted or has no model"
            )
        # NOTE: PostgreSQL returns bytea as memoryview; hash and hand out real bytes.
        blob, expected = bytes(found[0]), found[1]
        if hashlib.sha256(blob).hexdigest() != expected:
            raise IntegrityError(
                f"stored model {version.model}/{version.key} v{version.version} "
                "does not match its sha256; refusing to load it"
            )
        return blob

    @_guarded
    def delete(self, model: str, key: str) -> int:
        _names(model, key)
        rows = self._rows
        aliases = self._aliases
        where = (rows.model == model) & (rows.key == key)
        with self._session(), self._db.atomic():
            # Locked in one order (newest first), as finish's pruning locks them.
            self._locked(rows.select(rows.id).where(where).order_by(rows.version.desc())).execute()
            ids = [row_id for (row_id,) in rows.select(rows.id).where(where).tuples()]
            aliases.delete().where((aliases.model == model) & (aliases.key == key)).execute()
            deleted = rows.delete().where(where).execute()
            self._forget(ids)
            return deleted

    @_guarded
    def prepare(self) -> None:
        """Create or migrate the database now instead of on first use."""
        with self._session():
            pass

    @_guarded
    def ping(self) -> None:
        with self._session():
            self._db.execute_sql("SELECT 1")

    def error_counts(self) -> Mapping[str, int]:
        with self._errors_lock:
            return dict(self._errors)

    def close(self) -> None:
        self._deadlines.close()
        close_all = getattr(self._db, "close_all", None)
        if callable(close_all):
            close_all()
        elif not self._db.is_closed():
            self._db.close()
