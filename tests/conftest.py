"""Fixtures: real stores on a SQLite file and, when reachable, on PostgreSQL.

Like peewee's own tests, the backends come from the environment:
MLSERVER_TEST_BACKENDS ("sqlite,postgresql" by default) picks which ones run,
MLSERVER_TEST_POSTGRES is the PostgreSQL URL, and MLSERVER_REQUIRE_POSTGRES=1 (set by CI)
turns an unreachable PostgreSQL into a failure instead of a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import peewee
import pytest
from playhouse import db_url

from mlserver.store import SQLStore
from mlserver.store._tables import (
    ALIAS_TABLE,
    DATASET_TABLE,
    LINK_TABLE,
    SCHEMA_TABLE,
    TABLE_NAME,
)
from support import ServerProcess

POSTGRES_URL = os.environ.get("MLSERVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("MLSERVER_REQUIRE_POSTGRES") == "1"
BACKENDS = os.environ.get("MLSERVER_TEST_BACKENDS", "sqlite,postgresql").split(",")


def _reset_postgres() -> str | None:
    """Drop the store's tables so each test starts empty; the reason it cannot, if any."""
    try:
        db = db_url.connect(POSTGRES_URL)
        with db.connection_context():
            for table in (TABLE_NAME, ALIAS_TABLE, SCHEMA_TABLE, DATASET_TABLE, LINK_TABLE):
                db.execute_sql(f"DROP TABLE IF EXISTS {table}")
    except peewee.OperationalError as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {str(exc).strip()}"
    return None


def _postgres() -> str:
    reason = _reset_postgres()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'models.db'}"
    return _postgres()


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL test database, emptied (skipped without a server, unless required)."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not among MLSERVER_TEST_BACKENDS")
    return _postgres()


@pytest.fixture
def store(store_url: str) -> Iterator[SQLStore]:
    """A real SQLStore on each backend."""
    store = SQLStore(store_url)
    yield store
    store.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite file in the test's own directory."""
    return f"sqlite:///{tmp_path / 'models.db'}"


@pytest.fixture
def sqlite_server(sqlite_url) -> Iterator[ServerProcess]:
    """`ml-server serve` of the test registry on the test's SQLite file, stopped at the end."""
    server = ServerProcess(sqlite_url)
    yield server
    server.stop()
