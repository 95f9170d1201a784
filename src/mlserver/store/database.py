"""Opening a store's database from its URL: a connection pool on every backend, SQLite in WAL
mode, and PostgreSQL with every wait on the server bounded (libpq options and deadlines)."""

from __future__ import annotations

import importlib
import math
from typing import Any

import peewee
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase

from mlserver.errors import ConfigurationError, StoreError
from mlserver.store.deadlines import Deadlines

__all__ = ["PostgresPool", "open_database"]

#: libpq's shortest `connect_timeout` (it reads 1 as 2).
_MIN_CONNECT_SECONDS = 2


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
            "journal_mode": "wal",
            "synchronous": "normal",
            "busy_timeout": int(timeout * 1000),
        }
        return db_url.connect(
            url, pragmas=pragmas, lock_type="IMMEDIATE", check_same_thread=False, **pool
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
