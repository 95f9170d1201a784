"""Schema versions: a 0.1.0 database migrates to version 3 once, with every version intact,
even when processes open it at the same moment; a newer one is refused; a fresh one starts
at 3. On SQLite and PostgreSQL, from databases release 0.1.0 itself wrote (tests/data)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg2
import pytest
from playhouse import db_url

from mlserver.errors import ConfigurationError
from mlserver.store import SQLStore, Status
from mlserver.store._tables import ALIAS_TABLE, DATASET_TABLE, LINK_TABLE, SCHEMA_TABLE, TABLE_NAME
from mlserver.store.base import SERVED, Artifact
from mlserver.store.migrations import SCHEMA_VERSION, schema_version
from support import drop_tables, in_process, registry, settled

DATA = Path(__file__).parent / "data"
MODEL = "linreg"
NEWER = "database schema version 4 is newer than this mlserver's (3): upgrade mlserver"


def load_postgres_dump(url: str, path: Path) -> None:
    """Run a `pg_dump --inserts` file through psycopg2 (its psql-only lines left out)."""
    script = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("\\"))
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(script)
    finally:
        conn.close()


def copied(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[str]:
    """A copy of the database `name` in tests/data (`.db` on SQLite, `.postgres.sql`
    loaded into the emptied test database on PostgreSQL); its URL."""
    if request.param == "sqlite":
        shutil.copy(DATA / f"{name}.db", tmp_path / "models.db")
        yield f"sqlite:///{tmp_path / 'models.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    drop_tables(url)
    load_postgres_dump(url, DATA / f"{name}.postgres.sql")
    yield url
    drop_tables(url)


def recorded(url: str) -> dict:
    name = "release-0.1.0.db.json" if url.startswith("sqlite") else "release-0.1.0.postgres.json"
    return json.loads((DATA / name).read_text())


def stored_rows(url: str) -> dict[int, tuple]:
    """Every versions row as 0.1.0 wrote it, blobs as bytes, by id."""
    db = db_url.connect(url)
    with db.connection_context():
        cursor = db.execute_sql(
            "SELECT id, key, version, status, sha256, blob, signature, metadata, error "
            f"FROM {TABLE_NAME} ORDER BY id"
        )
        rows = {
            row[0]: tuple(bytes(v) if isinstance(v, memoryview) else v for v in row[1:])
            for row in cursor.fetchall()
        }
    db.close()
    return rows


def raw_schema_version(url: str) -> int | None:
    db = db_url.connect(url)
    with db.connection_context():
        found = schema_version(db)
    db.close()
    return found


def execute(url: str, sql: str) -> None:
    db = db_url.connect(url)
    with db.connection_context():
        db.execute_sql(sql)
    db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database release 0.1.0 wrote: a key trained twice and a key whose fit FAILED."""
    yield from copied(request, tmp_path, "release-0.1.0")


@pytest.fixture
def fresh_url(store_url: str) -> Iterator[str]:
    drop_tables(store_url)
    yield store_url
    drop_tables(store_url)


def test_a_0_1_0_database_migrates_with_every_version_intact(old_url):
    """Version 1 -> 2: the rows, blobs, sha256 and signatures as 0.1.0 wrote them; `served`
    at each key's newest FINISHED version; 0.1.0's rows read with no metrics, one attempt."""
    facts = recorded(old_url)
    before = stored_rows(old_url)
    assert [row[2] for row in before.values()] == ["FINISHED", "FINISHED", "FAILED"]
    assert raw_schema_version(old_url) == 1
    store = SQLStore(old_url)
    try:
        store.prepare()
        assert store.found_schema_version == 1
        assert raw_schema_version(old_url) == SCHEMA_VERSION
        assert stored_rows(old_url) == before
        for row in before.values():
            if row[4] is not None:
                assert hashlib.sha256(row[4]).hexdigest() == row[3]
        assert store.aliases(MODEL, facts["key"]) == {SERVED: 2}
        assert store.aliases(MODEL, facts["failed"]) == {}
        served = store.resolve(MODEL, facts["key"])
        assert (served.version, served.status) == (2, Status.FINISHED)
        assert store.load_blob(served) == before[served.id][4]
        listed = store.versions(MODEL, facts["key"]).items
        assert [(v.version, v.aliases, v.metrics, v.attempts) for v in listed] == [
            (2, (SERVED,), {}, 1),
            (1, (), {}, 1),
        ]
        assert [v.key for v in store.keys(MODEL).items] == sorted([facts["key"], facts["failed"]])
        # The ids go on where 0.1.0 left them.
        claim = store.claim(MODEL, facts["key"], worker="w", lease_seconds=30, retrain=True)
        assert (claim.version.version, claim.version.id) == (3, max(before) + 1)
    finally:
        store.close()
    reopened = SQLStore(old_url)
    try:
        reopened.prepare()
        assert reopened.found_schema_version == SCHEMA_VERSION
    finally:
        reopened.close()


_OPEN_AT_ONCE = """
import pathlib, sys, time
from mlserver.store import SQLStore
url, ready, go = sys.argv[1:]
store = SQLStore(url)
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.001)
store.prepare()
print(store.found_schema_version)
store.close()
"""


def open_at_once(url: str, tmp_path: Path) -> list[str]:
    """What two processes that prepare `url` at the same moment each found."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = []
    for n in range(2):
        ready = tmp_path / f"ready-{n}"
        command = [sys.executable, "-c", _OPEN_AT_ONCE, url, str(ready), str(tmp_path / "go")]
        processes.append(
            (ready, subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
        )
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in processes):
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    found = []
    for _, process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        found.append(out.strip())
    return sorted(found)


@pytest.mark.slow
def test_two_processes_opening_a_0_1_0_database_at_once_migrate_it_once(old_url, tmp_path):
    """Both succeed; one of them migrates (it found version 1), the other waits and then
    finds version 3."""
    assert open_at_once(old_url, tmp_path) == ["1", "3"]
    assert raw_schema_version(old_url) == SCHEMA_VERSION
    store = SQLStore(old_url)
    try:
        assert store.aliases(MODEL, recorded(old_url)["key"]) == {SERVED: 2}
    finally:
        store.close()


@pytest.mark.slow
def test_two_processes_creating_a_fresh_database_at_once_create_it_once(fresh_url, tmp_path):
    """One creates the tables (it found none), the other waits and finds version 3."""
    assert open_at_once(fresh_url, tmp_path) == ["3", "None"]
    assert raw_schema_version(fresh_url) == SCHEMA_VERSION


def test_a_fresh_database_is_created_at_version_3(fresh_url):
    """An empty database gets every table and schema version 3 directly, no migration."""
    store = SQLStore(fresh_url)
    try:
        assert raw_schema_version(fresh_url) is None
        store.prepare()
        assert store.found_schema_version is None
        assert raw_schema_version(fresh_url) == SCHEMA_VERSION
        db = db_url.connect(fresh_url)
        with db.connection_context():
            assert {TABLE_NAME, ALIAS_TABLE, SCHEMA_TABLE, DATASET_TABLE, LINK_TABLE} <= set(
                db.get_tables()
            )
            assert db.execute_sql(f"SELECT version FROM {SCHEMA_TABLE}").fetchall() == [(3,)]
            columns = {column.name for column in db.get_columns(TABLE_NAME)}
            assert {"metrics", "attempts", "signature", "lineage", "job"} <= columns
        db.close()
    finally:
        store.close()


def test_a_newer_schema_is_refused_naming_both_versions(fresh_url):
    """prepare() and the first call alike raise ConfigurationError, and change nothing."""
    first = SQLStore(fresh_url)
    first.prepare()
    first.close()
    execute(fresh_url, f"UPDATE {SCHEMA_TABLE} SET version = 4")
    store = SQLStore(fresh_url)
    try:
        with pytest.raises(ConfigurationError) as refused:
            store.prepare()
        assert str(refused.value) == NEWER
        with pytest.raises(ConfigurationError, match="upgrade mlserver"):
            store.newest("m", "k")
    finally:
        store.close()
    assert raw_schema_version(fresh_url) == 4


def test_a_0_1_0_database_newer_than_this_release_is_refused_before_migrating(old_url):
    """A schema table saying 4 wins over the 0.1.0 look of the versions table."""
    execute(old_url, f"CREATE TABLE {SCHEMA_TABLE} (version INTEGER NOT NULL)")
    execute(old_url, f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (4)")
    store = SQLStore(old_url)
    try:
        with pytest.raises(ConfigurationError, match="schema version 4 is newer"):
            store.prepare()
    finally:
        store.close()
    db = db_url.connect(old_url)
    with db.connection_context():
        assert ALIAS_TABLE not in db.get_tables()
        assert "metrics" not in {column.name for column in db.get_columns(TABLE_NAME)}
    db.close()


def test_aliases_left_by_a_dropped_versions_table_are_forgotten(fresh_url):
    """Without versions no alias points anywhere: the table is created anew, aliases none."""
    store = SQLStore(fresh_url)
    version_id = store.claim("m", "k", worker="w", lease_seconds=30, retrain=False).version.id
    blob = b"b"
    store.finish(version_id, Artifact(blob, hashlib.sha256(blob).hexdigest(), "joblib", {}))
    store.close()
    execute(fresh_url, f"DROP TABLE {TABLE_NAME}")
    store = SQLStore(fresh_url)
    try:
        assert store.aliases("m", "k") == {}
        assert store.claim("m", "k", worker="w", lease_seconds=30, retrain=False).created
        assert store.resolve("m", "k") is None
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def v2_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at schema 2 (the release before stored training data): an online key fitted
    and updated twice with an alias on version 1, and a key whose fit FAILED."""
    yield from copied(request, tmp_path, "schema-2")


def test_a_schema_2_database_migrates_to_3_and_answers_as_before(v2_url):
    """Version 2 -> 3: every row, blob and alias kept; the old versions read no lineage of
    their own (their `V` derives it from metadata) and cannot be refitted; predictions with
    `served` and with version 1 equal what the release before answered; new fits store data."""
    name = "schema-2.db.json" if v2_url.startswith("sqlite") else "schema-2.postgres.json"
    facts = json.loads((DATA / name).read_text())
    assert raw_schema_version(v2_url) == 2
    before = stored_rows(v2_url)
    with in_process(registry(), v2_url) as client:
        assert client.simulate_get("/health").status_code == 200  # the app starts: migrates
        assert raw_schema_version(v2_url) == SCHEMA_VERSION
        assert stored_rows(v2_url) == before
        key = facts["key"]
        aliases = client.simulate_get(f"/sgd/{key}/aliases").json["aliases"]
        assert aliases == {"served": 3, "baseline": 1}
        for version, expected in ((None, facts["y"]), (1, facts["y_1"])):
            body = {"x": facts["x"], "orient": "split", "model-key": key}
            if version is not None:
                body["version"] = version
            answered = client.simulate_post("/sgd", json=body).json["y"]
            assert {**answered, "data": None} == {**expected, "data": None}
            # NOTE: a dot product may round its last bit differently on another CPU's BLAS
            # kernel than where the fixture was made; anything more is a real difference.
            np.testing.assert_allclose(answered["data"], expected["data"], rtol=1e-14, atol=0)
        third = client.simulate_get(f"/sgd/{key}/versions/3").json
        assert third["lineage"] == {
            "data": None,
            "rows": 4,
            "columns": 2,
            "parent": 2,
            "kind": "update",
            "source": None,
        }
        assert client.simulate_post(f"/sgd/{key}/refit").status_code == 409
        fit = {"x": facts["x"], "y": facts["x"], "orient": "split", "name": "after"}
        fit["y"] = {"name": "t", "index": [0, 1, 2, 3], "data": [1.0, 2.0, 3.0, 4.0]}
        new = client.simulate_put("/sgd", json=fit).json["model-key"]
        settled(client, "sgd", new)
        assert client.simulate_get(f"/sgd/{new}/versions/1").json["lineage"]["data"]
    store = SQLStore(v2_url)
    try:
        assert [v.lineage for v in store.versions("sgd", facts["key"]).items] == [{}] * 3
        assert store.version("sgd", facts["failed"], 1).status is Status.FAILED
    finally:
        store.close()
