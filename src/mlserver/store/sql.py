"""SQLStore: versions in SQLite or PostgreSQL through peewee, one row per version."""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import importlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlparse

import orjson
import peewee
from playhouse import db_url
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import PooledPostgresqlDatabase

from mlserver.config import Settings
from mlserver.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidPayload,
    KeyNotFound,
    NotReady,
    StaleBase,
    StoreError,
)
from mlserver.store._tables import ADDED_COLUMNS, TABLE_NAME, make_version_table
from mlserver.store.base import Claim, Status, Store, Version

__all__ = ["SQLStore"]

INTERRUPTED = "interrupted: the process running this job stopped before it finished"

T = TypeVar("T")


def _now() -> datetime:
    # Stored naive in UTC: SQLite has no time zones and PostgreSQL's `timestamp` keeps none.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _names(model: str, key: str | None = None) -> None:
    """InvalidPayload for a NUL in a model name or key: PostgreSQL text cannot hold one, so
    no backend stores one (and none is ever found)."""
    for value, parameter in ((model, "model"), (key, "model-key")):
        if value is not None and "\x00" in value:
            raise InvalidPayload(f"{parameter} must not contain NUL characters", parameter)


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn database failures into StoreError; the message names the failure, not the SQL.

    Each failure (and each blob failing its sha256) is counted by operation, for metrics.
    """

    @functools.wraps(method)
    def wrapper(self: SQLStore, *args: Any, **kwargs: Any) -> T:
        try:
            with self._deadlines.within(self.timeout):
                return method(self, *args, **kwargs)
        except peewee.PeeweeException as exc:
            self._count_error(method.__name__)
            raise StoreError(f"database error in {method.__name__}: {type(exc).__name__}") from exc
        except StoreError:
            self._count_error(method.__name__)
            raise

    return wrapper


#: libpq's shortest `connect_timeout` (it reads 1 as 2).
_MIN_CONNECT_SECONDS = 2
#: The slowest transfer a blob statement is given time for, on top of the timeout (a 200 MiB
#: blob took 21 s to store on PostgreSQL on a loaded 2-core machine: ~10 MiB/s).
_BLOB_BYTES_PER_SECOND = 4 * 1024 * 1024


class _Call:
    __slots__ = ("broken", "conn", "deadline")

    def __init__(self, deadline: float, conn: Any) -> None:
        self.deadline = deadline
        self.conn = conn
        self.broken = False


class _Deadlines:
    """Per-thread deadlines of a store's database calls, kept by a thread of its own that
    breaks the connection of a call still waiting when its deadline passes.

    NOTE: `statement_timeout` only stops what the server runs, and TCP keepalives and
    `tcp_user_timeout` only notice a peer whose kernel stopped answering: a server, proxy or
    pooler that keeps the connection open and never replies passes all three, and libpq
    waits for its answer forever. Shutting the socket down makes that wait end at once, with
    an error, and the pool discards the connection.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Condition()
        self._calls: dict[int, _Call] = {}
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None
        #: Bumped by `close`: the thread of an older generation ends.
        self._generation = 0

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """The database calls of this block, on this thread, have `seconds` in all; an inner
        block keeps the outer deadline."""
        if getattr(self._local, "deadline", None) is not None:
            yield
            return
        self._local.deadline = time.monotonic() + seconds
        self._local.seconds = seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def extend(self, seconds: float) -> None:
        """Give the current block `seconds` more (a blob takes time to travel)."""
        if getattr(self._local, "deadline", None) is not None and seconds > 0:
            self._local.deadline += seconds
            self._local.seconds += seconds

    def remaining(self) -> float | None:
        deadline = getattr(self._local, "deadline", None)
        return None if deadline is None else deadline - time.monotonic()

    def timed_out(self) -> StoreError:
        seconds = getattr(self._local, "seconds", 0.0)
        return StoreError(
            f"the database did not answer within {seconds:.3g} s (database_timeout_seconds)"
        )

    def check(self) -> None:
        """StoreError if this thread's deadline has passed (e.g. while it waited for a lock)."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise self.timed_out()

    @contextlib.contextmanager
    def watching(self, conn: Any) -> Iterator[None]:
        """Break `conn` if this block outlives the thread's deadline, and then raise
        StoreError; without a deadline the block is not watched."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            yield
            return
        call = _Call(deadline, conn)
        with self._lock:
            self._calls[id(call)] = call
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._generation,),
                    name="mlserver-db-deadlines",
                    daemon=True,
                )
                self._thread.start()
            if deadline < self._wake_at:
                self._lock.notify()
        try:
            yield
        except Exception as exc:
            if call.broken:
                raise self.timed_out() from exc
            raise
        finally:
            with self._lock:  # once removed, the call can no longer be broken
                self._calls.pop(id(call), None)
        if call.broken:  # it ended in the same instant its deadline passed
            raise self.timed_out()

    def _run(self, generation: int) -> None:
        with self._lock:
            while generation == self._generation:
                now = time.monotonic()
                waiting = []
                for call in self._calls.values():
                    if call.broken:
                        continue
                    if call.deadline <= now:
                        call.broken = True
                        _break(call.conn)
                    else:
                        waiting.append(call.deadline)
                self._wake_at = min(waiting, default=float("inf"))
                self._lock.wait(None if not waiting else self._wake_at - now)

    def close(self) -> None:
        """End the thread; a later call starts a new one."""
        with self._lock:
            self._generation += 1
            self._thread = None
            self._wake_at = float("inf")
            self._lock.notify_all()


def _break(conn: Any) -> None:
    """Shut a connection's socket down (never close its descriptor, which libpq owns): its
    blocked read returns and the driver reports the connection lost."""
    if getattr(conn, "closed", 0):
        return
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except OSError:  # the descriptor is gone: nothing left to break
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already disconnected
        pass
    finally:
        sock.close()


class _PostgresPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool whose check-outs keep the calling thread's deadline.

    NOTE: peewee checks an idle connection with a round trip (`SELECT 1`) while it holds
    the pool's lock; unwatched, one silent connection would block every thread.
    """

    deadlines: _Deadlines

    def _connect(self) -> Any:
        self.deadlines.check()  # it may have waited for the lock past its deadline
        return super()._connect()

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        try:
            with self.deadlines.watching(conn):
                return super()._is_closed(conn)
        except StoreError:
            self._close_raw(conn)
            raise

    def _can_reuse(self, conn: Any) -> bool:
        try:
            with self.deadlines.watching(conn):
                return super()._can_reuse(conn)
        except StoreError:
            return False


def _postgres_driver() -> None:
    """ConfigurationError naming the extra to install when no PostgreSQL driver imports."""
    for name in ("psycopg2", "psycopg"):
        try:
            importlib.import_module(name)
            return
        except ImportError:
            continue
    raise ConfigurationError(
        "a postgresql:// store needs the PostgreSQL driver: pip install 'ml-server[postgres]'"
    )


def _postgres_options(kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    """libpq parameters bounding every wait on the server; the URL's own values win."""
    seconds = max(1, math.ceil(timeout))
    bounds: dict[str, Any] = {
        # The whole connection start-up, TCP and authentication alike.
        "connect_timeout": max(_MIN_CONNECT_SECONDS, seconds),
        # Sent data unacknowledged this long, and an idle connection whose peer vanished
        # (probed every third of the timeout), count as a lost connection.
        "tcp_user_timeout": seconds * 1000,
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": max(1, seconds // 3),
        "keepalives_count": 3,
    }
    merged = {**bounds, **kwargs}
    # The server ends statements running longer (lock waits included); a URL's own
    # `options` come after ours, so its settings win.
    given = kwargs.get("options")
    statement = f"-c statement_timeout={int(timeout * 1000)}"
    merged["options"] = statement if not given else f"{statement} {given}"
    return merged


def _open(
    given: str, timeout: float, max_connections: int, deadlines: _Deadlines
) -> peewee.Database:
    scheme, _, rest = given.partition("://")
    if scheme not in db_url.schemes:
        raise ConfigurationError(
            f"unsupported store URL scheme {scheme!r}; use sqlite:///path.db or postgresql://..."
        )
    # PERF: every URL gets a pool: a fresh connection per call costs more than the query
    # (SQLite re-runs its pragmas, PostgreSQL authenticates).
    base = scheme.removesuffix("+pool")
    if base in ("postgres", "postgresql"):
        base = "postgresql"
    url = f"{base}+pool://{rest}"
    # The wait for a free pooled connection is bounded like any other wait.
    pool = {"max_connections": max_connections, "stale_timeout": 300, "timeout": timeout}
    if base == "sqlite":
        if db_url.parse(url).get("database") in (None, "", ":memory:"):
            # NOTE: each pooled connection would see a new, empty in-memory database.
            raise ConfigurationError(
                f"SQLite needs a file: sqlite:///path/to/models.db, not {given!r}"
            )
        # NOTE: WAL lets readers run beside the one writer; IMMEDIATE transactions take the
        # write lock up front so concurrent claims wait (busy timeout) instead of deadlocking.
        pragmas = {
            "journal_mode": "wal",
            "synchronous": "normal",
            "busy_timeout": int(timeout * 1000),
        }
        return db_url.connect(
            url, pragmas=pragmas, lock_type="IMMEDIATE", check_same_thread=False, **pool
        )
    if base != "postgresql":
        return db_url.connect(url, **pool)
    _postgres_driver()
    kwargs = db_url.parse(url)
    if not kwargs.get("database"):
        return db_url.connect(url)  # raises peewee's message for a URL without a database
    db = _PostgresPool(**_postgres_options(kwargs, timeout), **pool)
    db.deadlines = deadlines
    return db


class SQLStore(Store):
    """A Store on any database peewee's `playhouse.db_url` reads; the schema is created on
    first use. Connections come from a pool on every backend; SQLite runs in WAL mode."""

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
        self._deadlines = _Deadlines()
        try:
            self._db = _open(url, self.timeout, max_connections, self._deadlines)
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(f"bad store URL: {exc}") from None
        #: Calls on PostgreSQL are watched (see _Deadlines); SQLite waits at most its busy timeout.
        self._watched = isinstance(self._db, _PostgresPool)
        self.url = url
        self._rows = make_version_table(self._db)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._errors: collections.Counter[str] = collections.Counter()
        self._errors_lock = threading.Lock()
        # Every column but the blob: listings and status reads never drag model bytes along.
        self._meta_columns = [f for f in self._rows._meta.sorted_fields if f.name != "blob"]
        self._newest_sql = {finished: self._compile_newest(finished) for finished in (False, True)}

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
                try:
                    self._db.create_tables([self._rows], safe=True)
                except (peewee.IntegrityError, peewee.ProgrammingError):
                    # Another process created it between our check and our CREATE: the
                    # second pass finds everything and creates nothing.
                    self._db.create_tables([self._rows], safe=True)
                self._add_missing_columns()
            self._schema_ready = True

    def _add_missing_columns(self) -> None:
        """Add the columns a table created by an older release lacks (all nullable)."""
        present = {column.name for column in self._db.get_columns(TABLE_NAME)}
        migrator = SchemaMigrator.from_database(self._db)
        for name in ADDED_COLUMNS:
            if name in present:
                continue
            try:
                migrate(migrator.add_column(TABLE_NAME, name, self._rows._meta.fields[name]))
            except (peewee.OperationalError, peewee.ProgrammingError):
                # Another process added it between our look and our ALTER TABLE.
                if name not in {column.name for column in self._db.get_columns(TABLE_NAME)}:
                    raise

    def _count_error(self, operation: str) -> None:
        with self._errors_lock:
            self._errors[operation] += 1

    def _version(self, data: Mapping[str, Any]) -> Version:
        """A Version from column values; a freshly created row lacks its unset columns."""
        return Version(
            id=data["id"],
            model=data["model"],
            key=data["key"],
            version=data["version"],
            status=Status(data["status"]),
            created=_aware(data["created"]),
            started=_aware(data.get("started")),
            finished=_aware(data.get("finished")),
            serializer=data.get("serializer"),
            sha256=data.get("sha256"),
            signature=data.get("signature"),
            size=data.get("size"),
            error=data.get("error"),
            worker=data.get("worker"),
            metadata=orjson.loads(data.get("metadata") or "{}"),
        )

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
        if found is None:
            return None
        return {
            field.name: field.python_value(value)
            for field, value in zip(self._meta_columns, found, strict=True)
        }

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
                    base = self._newest_row(model, key, finished=True)
                    if base is None:
                        raise NotReady(
                            f"no version of {key!r} has finished; the newest is {newest['status']}",
                            newest["status"],
                        )
                    if base_id is not None and base["id"] != base_id:
                        raise StaleBase(
                            f"version {base['version']} of {key!r} finished after the one this "
                            "update was checked against"
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
        *,
        blob: bytes,
        sha256: str,
        serializer: str,
        metadata: Mapping[str, Any],
        signature: str | None = None,
    ) -> bool:
        rows = self._rows
        with self._blob_session(len(blob)):
            updated = (
                rows.update(
                    status=Status.FINISHED.value,
                    finished=_now(),
                    lease_expires=None,
                    blob=blob,
                    sha256=sha256,
                    signature=signature,
                    size=len(blob),
                    serializer=serializer,
                    metadata=orjson.dumps(metadata, default=str).decode(),
                )
                .where((rows.id == version_id) & (rows.status == Status.RUNNING.value))
                .execute()
            )
        return updated == 1

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
    def expire(self, *, dead_workers: tuple[str, ...] = ()) -> int:
        rows = self._rows
        now = _now()
        lost = rows.lease_expires < now
        if dead_workers:
            lost |= rows.worker.in_(list(dead_workers))
        with self._session():
            return (
                rows.update(
                    status=Status.FAILED.value, finished=now, lease_expires=None, error=INTERRUPTED
                )
                .where((rows.status == Status.RUNNING.value) & lost)
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
    def keys(self, model: str) -> list[Version]:
        _names(model)
        rows = self._rows
        newest = (
            rows.select(rows.key, peewee.fn.MAX(rows.version).alias("top"))
            .where(rows.model == model)
            .group_by(rows.key)
            .alias("newest")
        )
        query = (
            self._select()
            .join(newest, on=((rows.key == newest.c.key) & (rows.version == newest.c.top)))
            .where(rows.model == model)
            .order_by(rows.created, rows.id)
        )
        with self._session():
            return [self._version(row.__data__) for row in query]

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
        with self._session():
            return rows.delete().where((rows.model == model) & (rows.key == key)).execute()

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

    @_guarded
    def versions(self, model: str, key: str) -> list[Version]:
        _names(model, key)
        rows = self._rows
        query = (
            self._select()
            .where((rows.model == model) & (rows.key == key))
            .order_by(rows.version.desc())
        )
        with self._session():
            return [self._version(row.__data__) for row in query]
