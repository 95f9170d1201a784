"""The Store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import falcon.testing
import pytest

from mlserver import create_app
from mlserver.errors import ConfigurationError, IntegrityError, KeyNotFound, NotReady
from mlserver.store import SQLStore, Status
from mlserver.store.base import Artifact
from mlserver.store.sql import INTERRUPTED
from support import raw_integrity_errors, raw_sql, registry, wait_until

LEASE = 30.0


def _finish(store: SQLStore, version_id: int, blob: bytes = b"model-bytes") -> bool:
    metadata = {"rows": 3, "features": [{"name": "a", "dtype": "float64"}]}
    return store.finish(
        version_id, Artifact(blob, hashlib.sha256(blob).hexdigest(), "joblib", metadata)
    )


def _claim(store: SQLStore, key: str = "k", retrain: bool = False, worker: str = "w1"):
    return store.claim("m", key, worker=worker, lease_seconds=LEASE, retrain=retrain)


def test_first_claim_creates_version_one(store):
    """A key without versions gets version 1, RUNNING, with start time and worker."""
    claim = _claim(store)
    assert claim.created
    assert (claim.version.version, claim.version.status) == (1, Status.RUNNING)
    assert claim.version.worker == "w1" and claim.version.started is not None


def test_running_key_is_not_claimed_twice(store):
    """While a version runs, a second claim (even with retrain) returns it unchanged."""
    first = _claim(store).version
    for retrain in (False, True):
        again = _claim(store, retrain=retrain)
        assert not again.created
        assert again.version.id == first.id


def test_finished_key_needs_retrain(store):
    """A FINISHED key is returned as is, and retrain adds version 2."""
    first = _claim(store).version
    assert _finish(store, first.id)
    same = _claim(store)
    assert not same.created and same.version.status is Status.FINISHED
    second = _claim(store, retrain=True)
    assert second.created and second.version.version == 2


def test_failed_key_trains_again_without_retrain(store):
    """A key whose newest version FAILED is claimed again as a new version."""
    first = _claim(store).version
    assert store.fail(first.id, "ValueError: bad")
    again = _claim(store)
    assert again.created and again.version.version == 2
    assert store.newest("m", "k", finished=True) is None


def test_finish_stores_blob_and_metadata(store):
    """finish records bytes, hash, size and metadata; load_blob gives the same bytes back."""
    version = _claim(store).version
    blob = bytes(range(256)) * 1000
    assert _finish(store, version.id, blob)
    stored = store.newest("m", "k")
    assert stored.status is Status.FINISHED and stored.finished is not None
    assert stored.size == len(blob) and stored.sha256 == hashlib.sha256(blob).hexdigest()
    assert stored.metadata["rows"] == 3
    loaded = store.load_blob(stored)
    assert type(loaded) is bytes and loaded == blob


def test_tampered_blob_is_refused(store):
    """A blob whose bytes no longer match the stored sha256 raises IntegrityError."""
    version = _claim(store).version
    _finish(store, version.id, b"original")
    raw_sql(store.url, "UPDATE {table} SET blob = ? WHERE id = ?", (b"tampered", version.id))
    with pytest.raises(IntegrityError, match="sha256"):
        store.load_blob(store.newest("m", "k"))


def test_finish_after_delete_does_not_resurrect(store):
    """A job that ends after its key was deleted writes nothing."""
    version = _claim(store).version
    assert store.delete("m", "k") == 1
    assert not _finish(store, version.id)
    assert not store.fail(version.id, "late")
    assert store.newest("m", "k") is None


def test_ids_are_not_reused_after_delete(store):
    """A new version after a delete never gets the id of a deleted one."""
    old = _claim(store).version
    store.delete("m", "k")
    new = _claim(store).version
    assert new.id > old.id
    assert not _finish(store, old.id)


def test_claim_update_rules(store):
    """Update needs an existing key, nothing RUNNING, and a FINISHED base."""
    with pytest.raises(KeyNotFound):
        store.claim_update("m", "k", worker="w1", lease_seconds=LEASE)
    first = _claim(store).version
    with pytest.raises(NotReady) as running:
        store.claim_update("m", "k", worker="w1", lease_seconds=LEASE)
    assert running.value.status == "RUNNING"
    store.fail(first.id, "boom")
    with pytest.raises(NotReady) as failed:
        store.claim_update("m", "k", worker="w1", lease_seconds=LEASE)
    assert failed.value.status == "FAILED"
    second = _claim(store).version
    _finish(store, second.id)
    new, base = store.claim_update("m", "k", worker="w1", lease_seconds=LEASE)
    assert (new.version, base.version, new.status) == (3, 2, Status.RUNNING)


def test_claim_update_of_a_base_no_longer_newest_is_refused(store):
    """An update checked against version 1 is not started once version 2 is served: the
    caller hears so (409), and no RUNNING version is left behind."""
    first = _claim(store).version
    _finish(store, first.id)
    second = _claim(store, retrain=True).version
    _finish(store, second.id)
    with pytest.raises(NotReady) as stale:
        store.claim_update("m", "k", worker="w1", lease_seconds=LEASE, base_id=first.id)
    assert stale.value.status == "FINISHED" and "version 2" in str(stale.value)
    assert store.newest("m", "k").id == second.id
    new, base = store.claim_update("m", "k", worker="w1", lease_seconds=LEASE, base_id=second.id)
    assert (new.version, base.id) == (3, second.id)


def test_update_base_skips_failed_versions(store):
    """The base of an update is the served version even when a later one FAILED."""
    first = _claim(store).version
    _finish(store, first.id)
    second = _claim(store, retrain=True).version
    store.fail(second.id, "boom")
    new, base = store.claim_update("m", "k", worker="w1", lease_seconds=LEASE)
    assert base.id == first.id and new.version == 3


def test_concurrent_claims_start_exactly_one(store):
    """Eight threads claiming one key at once: the database lets exactly one create it."""
    barrier = threading.Barrier(8)
    results = []

    def claim():
        barrier.wait()
        results.append(_claim(store, retrain=True))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(c.created for c in results) == 1
    assert {c.version.id for c in results} == {next(c.version.id for c in results if c.created)}


def test_database_rejects_second_running_row(store):
    """The one-RUNNING rule lives in the database: a raw second RUNNING insert fails."""
    version = _claim(store).version
    with pytest.raises(raw_integrity_errors(), match=r"(?i)unique"):
        raw_sql(
            store.url,
            "INSERT INTO {table} (model, key, version, status, created, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ("m", "k", 2, "RUNNING", version.created.isoformat(), "{}"),
        )


def test_expired_lease_becomes_interrupted(store):
    """A RUNNING version whose lease ran out is marked FAILED with 'interrupted'."""
    store.claim("m", "k", worker="gone", lease_seconds=-1, retrain=False)
    live = store.claim("m", "other", worker="alive", lease_seconds=LEASE, retrain=False)
    assert store.expire() == 1
    lost = store.newest("m", "k")
    assert lost.status is Status.FAILED and lost.error == INTERRUPTED
    assert store.newest("m", "other").status is Status.RUNNING
    assert store.heartbeat("alive", LEASE) == 1
    assert store.newest("m", "other").id == live.version.id


def test_dead_workers_are_expired_at_once(store):
    """Versions of a worker known dead are interrupted even with a valid lease."""
    _claim(store, worker="dead")
    _claim(store, key="k2", worker="alive")
    assert sorted(store.running_workers()) == ["alive", "dead"]
    assert store.expire(dead_workers=("dead",)) == 1
    assert store.newest("m", "k").status is Status.FAILED
    assert store.newest("m", "k2").status is Status.RUNNING


def test_heartbeat_extends_lease(store):
    """A heartbeat renews the lease so that expire leaves the version alone."""
    store.claim("m", "k", worker="w1", lease_seconds=-1, retrain=False)
    assert store.heartbeat("w1", LEASE) == 1
    assert store.expire() == 0
    assert store.newest("m", "k").status is Status.RUNNING


def test_keys_lists_newest_version_per_key(store):
    """keys() gives one entry per key of the model: its newest version."""
    a1 = _claim(store, key="a").version
    _finish(store, a1.id)
    _claim(store, key="a", retrain=True)
    b1 = _claim(store, key="b").version
    store.fail(b1.id, "boom")
    store.claim("other-model", "c", worker="w1", lease_seconds=LEASE, retrain=False)
    listed = {(v.key, v.version, v.status) for v in store.keys("m").items}
    assert listed == {("a", 2, Status.RUNNING), ("b", 1, Status.FAILED)}


def test_delete_counts_every_version(store):
    """delete removes all versions of the key and only of that key."""
    for _ in range(3):
        version = _claim(store, retrain=True).version
        _finish(store, version.id)
    _claim(store, key="keep")
    assert store.delete("m", "k") == 3
    assert store.delete("m", "k") == 0
    assert store.newest("m", "keep") is not None


def test_ping_and_repr_hide_credentials(store):
    """ping answers on a live database, and repr never shows the URL's credentials."""
    store.ping()
    assert "@" not in repr(store)


def test_bad_urls_are_configuration_errors(tmp_path):
    """Unknown schemes and URLs without a database fail at construction with a clear error."""
    with pytest.raises(ConfigurationError, match="scheme"):
        SQLStore("mongodb://localhost/x")
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigurationError, match="SQLite needs a file"):
            SQLStore(url)
    with pytest.raises(ConfigurationError, match="bad store URL"):
        SQLStore("postgresql://localhost")


def test_schema_is_created_once_for_two_stores(store_url):
    """Two stores on one database share the table: one sees what the other wrote."""
    first, second = SQLStore(store_url), SQLStore(store_url)
    try:
        version = first.claim("m", "k", worker="w", lease_seconds=LEASE, retrain=False).version
        assert second.newest("m", "k").id == version.id
    finally:
        first.close()
        second.close()


def _open_connections(store: SQLStore) -> int:
    """Connections the store holds open, in use or idle in its pool."""
    db = store._db
    return len(db._in_use) + len(db._connections)


def test_connections_are_pooled_and_released(store):
    """Many calls from many threads reuse a few pooled connections; close releases them all."""

    def work():
        for i in range(20):
            version = _claim(store, key=f"k{threading.get_ident()}-{i}").version
            _finish(store, version.id)
            store.load_blob(store.newest("m", version.key))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store._db._in_use) == 0
    assert 1 <= _open_connections(store) <= 8
    store.close()
    assert _open_connections(store) == 0


def test_postgres_server_sees_no_leaked_connections(postgres_url):
    """PostgreSQL itself counts this store's sessions: at most the pool, none after close."""
    tagged = f"{postgres_url}?application_name=mlserver-leak-test"
    store = SQLStore(tagged)

    def sessions() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?"
        return raw_sql(postgres_url, query, ("mlserver-leak-test",))[0][0]

    try:
        threads = [
            threading.Thread(target=lambda n=n: [_claim(store, key=f"{n}-{i}") for i in range(10)])
            for n in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert 1 <= sessions() <= 6
        store.close()
        # A backend leaves pg_stat_activity a moment after its client hung up.
        wait_until(lambda: sessions() == 0, timeout=5)
    finally:
        store.close()


@pytest.mark.slow  # moves 200 MiB each way: tens of seconds on PostgreSQL
def test_a_200_mb_model_round_trips_with_its_hash(store):
    """A 200 MiB blob is stored and loaded back byte for byte, its sha256 checked."""
    blob = os.urandom(200 * 1024 * 1024)
    version = _claim(store).version
    assert _finish(store, version.id, blob)
    stored = store.newest("m", "k")
    assert stored.size == len(blob)
    loaded = store.load_blob(stored)
    assert hashlib.sha256(loaded).hexdigest() == hashlib.sha256(blob).hexdigest()


# -- the app touches its store when it starts serving, not when it is built ----------------


def _closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_create_app_does_no_io_on_an_unreachable_database():
    """Building the app on a PostgreSQL URL to a closed port raises nothing and calls the
    store not once; its first request starts it and gets the contract's 503."""
    pytest.importorskip("psycopg2")
    store = SQLStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing", timeout=1)
    app = create_app(registry(), store, database_timeout_seconds=1)
    try:
        assert store.error_counts() == {}  # no call was even tried
        assert not app.service.jobs.started
        response = falcon.testing.TestClient(app).simulate_get("/ready")
        assert response.status_code == 503, response.text
        assert response.json["title"] == "Store unavailable"
        assert app.service.jobs.started
        assert store.error_counts()["running_workers"] == 1  # the first sweep, then /ready
    finally:
        app.close()
        store.close()


def test_an_app_that_never_served_closes(store):
    """`close` works on an app that never started: no thread to stop, no job left."""
    app = create_app(registry(), store)
    assert app.close(timeout=0) == 0
    assert not app.service.jobs.started
    app.service.jobs.start()  # after close: a no-op
    assert not app.service.jobs.started


@pytest.mark.parametrize("how", ["first request", "start"])
def test_an_expired_version_is_swept_when_the_app_starts_not_when_built(store, how):
    """A RUNNING version whose lease ran out stays RUNNING through `create_app` and is FAILED
    "interrupted" once the app starts serving (its first request, or `start`)."""
    stale = store.claim("linreg", "stale", worker="gone", lease_seconds=-60, retrain=False)
    app = create_app(registry(), store, heartbeat_seconds=20)
    try:
        assert store.newest("linreg", "stale").status is Status.RUNNING
        if how == "start":
            app.start()
            app.start()  # idempotent
        else:
            assert falcon.testing.TestClient(app).simulate_get("/health").status_code == 200
        swept = store.newest("linreg", "stale")
        assert (swept.id, swept.status, swept.error) == (
            stale.version.id,
            Status.FAILED,
            INTERRUPTED,
        )
    finally:
        app.close()
