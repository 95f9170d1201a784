"""Opening a store's database from its URL: a connection pool on every backend, SQLite in WAL
mode, and PostgreSQL with every wait on the server bounded (libpq options and deadlines)."""

from __future__ import annotations

import importlib
import math
import sqlite3
import time
from typing import Any

import peewee
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from mlserver.errors import ConfigurationError, StoreError
from mlserver.store.deadlines import Deadlines

__all__ = ["PostgresPool", "open_database"]

#: libpq's shortest `connect_timeout` (it reads 1 as 2).
_MIN_CONNECT_SECONDS = 2


class SqlitePool(PooledSqliteDatabase):
    """SQLite's pool, whose new connections wait for a lock their pragmas need.

    NOTE: switching a file to WAL needs a lock SQLite does not wait for: a second process
    opening a database another one is creating at that moment got "database is locked"
    at once. Each connection tries again, within the store's timeout.
    """

    def __init__(self, *args: Any, busy_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy_seconds = busy_seconds

    def _set_pragmas(self, conn: Any) -> None:
        deadline = time.monotonic() + self._busy_seconds
        while True:
            try:
                super()._set_pragmas(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)


class PostgresPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool whose check-outs keep the calling thread's deadline.

    NOTE: peewee checks an idle connection with a round trip (`SELECT 1`) while it holds
    the pool's lock; unwatched, one silent connection would block every thread.
    """

    deadlines: Deadlines

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


def postgres_driver() -> None:
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


def postgres_options(kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
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


def open_database(
    given: str, timeout: float, max_connections: int, deadlines: Deadlines
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
            "busy_timeout": int(timeout * 1000),
            "journal_mode": "wal",
            "synchronous": "normal",
        }
        database = db_url.parse(url)["database"]
        return SqlitePool(
            database,
            pragmas=pragmas,
            lock_type="IMMEDIATE",
            check_same_thread=False,
            busy_seconds=timeout,
            **pool,
        )
    if base != "postgresql":
        return db_url.connect(url, **pool)
    postgres_driver()
    kwargs = db_url.parse(url)
    if not kwargs.get("database"):
        return db_url.connect(url)  # raises peewee's message for a URL without a database
    db = PostgresPool(**postgres_options(kwargs, timeout), **pool)
    db.deadlines = deadlines
    return db
