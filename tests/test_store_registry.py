"""The registry part of the Store contract (versions, aliases, promotion, retention, cancel,
paging), run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import peewee
import pytest
from playhouse import db_url

from mlserver.errors import Conflict, InvalidPayload, KeyNotFound, NotReady, StaleBase
from mlserver.store import SQLStore, Status, Version
from mlserver.store._tables import TABLE_NAME, make_version_table
from mlserver.store.base import SERVED, Artifact, Page
from support import drop_tables

LEASE = 30.0


@pytest.fixture
def store(store_url: str) -> Iterator[SQLStore]:
    """A real SQLStore on each backend, on a database with none of the store's tables."""
    drop_tables(store_url)
    store = SQLStore(store_url)
    yield store
    store.close()
    drop_tables(store_url)


def _claim(store: SQLStore, key: str = "k") -> int:
    claim = store.claim("m", key, worker="w", lease_seconds=LEASE, retrain=True)
    assert claim.created
    return claim.version.id


def _artifact(score: float | None = None, scoring: str = "accuracy") -> Artifact:
    blob = b"model-bytes"
    metrics = (
        {} if score is None else {"validation": {"score": score, "scoring": scoring, "rows": 5}}
    )
    return Artifact(blob, hashlib.sha256(blob).hexdigest(), "joblib", {"rows": 3}, metrics)


def _fit(store: SQLStore, key: str = "k", score: float | None = None, **options) -> int:
    """A version of `key` that finished; returns its number."""
    version_id = _claim(store, key)
    assert store.finish(version_id, _artifact(score, options.pop("scoring", "accuracy")), **options)
    return store.newest("m", key).version


def _served(store: SQLStore, key: str = "k") -> int | None:
    return store.aliases("m", key).get(SERVED)


# -- promotion -------------------------------------------------------------------------------


@pytest.mark.parametrize("promote", ["always", "if-better", "never"])
def test_the_first_finished_version_is_served_whatever_promote_says(store, promote):
    """Every key with a FINISHED version has `served`: its first one gets it, and says why."""
    assert _fit(store, score=0.5, promote=promote) == 1
    assert store.aliases("m", "k") == {SERVED: 1}
    metrics = store.version("m", "k", 1).metrics
    assert metrics["promoted"] is True and "first" in metrics["reason"]
    assert metrics["validation"] == {"score": 0.5, "scoring": "accuracy", "rows": 5}


def test_promote_always_and_never(store):
    """always moves `served` to the new version; never leaves it, the new one a candidate."""
    _fit(store)
    assert _fit(store, promote="never") == 2
    assert _served(store) == 1
    candidate = store.version("m", "k", 2)
    assert candidate.metrics == {
        "promoted": False,
        "reason": "promote=never: a candidate; move the served alias to promote it",
    }
    assert candidate.aliases == ()
    assert _fit(store, promote="always") == 3
    assert _served(store) == 3
    assert store.version("m", "k", 3).metrics["reason"] == "promote=always"
    assert store.resolve("m", "k").version == 3


def test_promote_if_better_compares_validation_scores(store):
    """if-better promotes a score at least the served one's (ties too), not a lower one."""
    _fit(store, score=0.88)
    _fit(store, score=0.91, promote="if-better")
    assert _served(store) == 2
    assert store.version("m", "k", 2).metrics["reason"] == (
        "validation score 0.91 >= served version 1's 0.88 (accuracy)"
    )
    _fit(store, score=0.5, promote="if-better")
    assert _served(store) == 2
    worse = store.version("m", "k", 3).metrics
    assert worse["promoted"] is False and worse["reason"].startswith("validation score 0.5 <")
    _fit(store, score=0.91, promote="if-better")
    assert _served(store) == 4


def test_promote_if_better_compares_only_the_same_scoring(store):
    """A served score of another scorer is no yardstick: the version is promoted."""
    _fit(store, score=0.99, scoring="accuracy")
    _fit(store, score=0.1, scoring="f1", promote="if-better")
    assert _served(store) == 2
    assert store.version("m", "k", 2).metrics["promoted"] is True


@pytest.mark.parametrize(("first", "second"), [(None, 0.1), (0.9, None)])
def test_promote_if_better_without_scores_promotes(store, first, second):
    """Either side without a validation score: nothing to compare, promoted as with always."""
    _fit(store, score=first)
    _fit(store, score=second, promote="if-better")
    assert _served(store) == 2
    assert store.version("m", "k", 2).metrics["reason"] == (
        "no validation score to compare: promoted as with always"
    )


@pytest.mark.parametrize(
    ("options", "parameter"),
    [({"promote": "sometimes"}, "promote"), ({"keep_versions": -1}, "keep_versions")],
)
def test_bad_finish_options_are_refused_changing_nothing(store, options, parameter):
    """A bad promote or keep_versions names itself, and the version stays RUNNING."""
    version_id = _claim(store)
    with pytest.raises(InvalidPayload) as refused:
        store.finish(version_id, _artifact(), **options)
    assert refused.value.parameter == parameter
    assert store.newest("m", "k").status is Status.RUNNING
    assert store.aliases("m", "k") == {}


# -- retention -------------------------------------------------------------------------------


def test_keep_versions_deletes_the_oldest_but_never_an_aliased_one(store):
    """keep_versions=1 leaves the newest, plus what aliases point at (served, a pin)."""
    _fit(store)  # 1: served
    _fit(store, promote="never")  # 2: pinned below
    store.fail(_claim(store), "boom")  # 3
    _fit(store, promote="never")  # 4
    store.set_alias("m", "k", "pinned", 2)
    _fit(store, promote="never", keep_versions=1)  # 5
    assert [v.version for v in store.versions("m", "k").items] == [5, 2, 1]
    assert store.aliases("m", "k") == {"pinned": 2, SERVED: 1}
    # Once promoted, the old served version goes too.
    _fit(store, promote="always", keep_versions=2)  # 6
    assert [v.version for v in store.versions("m", "k").items] == [6, 5, 2]


def test_keep_versions_zero_keeps_all(store):
    """keep_versions=0 (the default) deletes nothing."""
    for _ in range(4):
        _fit(store, keep_versions=0)
    assert len(store.versions("m", "k").items) == 4


def test_keep_versions_never_deletes_a_running_version(store):
    """The RUNNING version of a key is the one finishing or a newer one: never pruned. A
    finish of another key leaves this one's RUNNING version alone."""
    _fit(store, key="other")
    running = _claim(store, key="k")
    _fit(store, key="other", keep_versions=1)
    assert store.newest("m", "k").id == running
    assert store.newest("m", "k").status is Status.RUNNING


# -- cancel and delete -----------------------------------------------------------------------


def test_deleting_a_running_version_cancels_it_and_finish_stores_nothing(store):
    """DELETE of a RUNNING version makes it FAILED "cancelled"; its job's finish is refused."""
    _fit(store)
    running = _claim(store)
    before = store.delete_version("m", "k", 2)
    assert (before.status, before.id) == (Status.RUNNING, running)
    cancelled = store.version("m", "k", 2)
    assert (cancelled.status, cancelled.error) == (Status.FAILED, "cancelled")
    assert store.finish(running, _artifact(0.99), promote="always") is False
    after = store.version("m", "k", 2)
    assert (after.status, after.sha256, after.metrics) == (Status.FAILED, None, {})
    assert store.aliases("m", "k") == {SERVED: 1}
    # A FAILED version is deleted for good the second time.
    assert store.delete_version("m", "k", 2).status is Status.FAILED
    assert store.version("m", "k", 2) is None


def test_delete_version_refuses_an_aliased_one(store):
    """Conflict while any alias points at it (served cannot be deleted; move it first)."""
    _fit(store)
    _fit(store, promote="never")
    with pytest.raises(Conflict, match="served"):
        store.delete_version("m", "k", 1)
    store.set_alias("m", "k", "best", 2)
    with pytest.raises(Conflict, match="best"):
        store.delete_version("m", "k", 2)
    assert store.delete_alias("m", "k", "best") is True
    assert store.delete_version("m", "k", 2).version == 2
    assert [v.version for v in store.versions("m", "k").items] == [1]
    with pytest.raises(KeyNotFound):
        store.delete_version("m", "k", 2)
    with pytest.raises(KeyNotFound):
        store.delete_version("m", "missing", 1)


def test_deleting_a_key_deletes_its_aliases(store):
    """delete() takes the key's aliases along: a new version 1 is served afresh."""
    _fit(store)
    _fit(store, promote="never")
    store.set_alias("m", "k", "pinned", 2)
    _fit(store, key="other")
    assert store.delete("m", "k") == 2
    assert store.aliases("m", "k") == {}
    assert store.resolve("m", "k") is None
    assert store.aliases("m", "other") == {SERVED: 1}
    _fit(store)
    assert store.aliases("m", "k") == {SERVED: 1}


# -- aliases ---------------------------------------------------------------------------------


def test_aliases_point_at_finished_versions_only(store):
    """KeyNotFound without the version, NotReady (with its status) unless FINISHED."""
    with pytest.raises(KeyNotFound):
        store.set_alias("m", "k", "x", 1)
    _fit(store)
    store.fail(_claim(store), "boom")
    _claim(store)
    for number, status in ((2, "FAILED"), (3, "RUNNING")):
        with pytest.raises(NotReady) as refused:
            store.set_alias("m", "k", "x", number)
        assert refused.value.status == status
    with pytest.raises(KeyNotFound):
        store.set_alias("m", "k", "x", 9)
    assert store.aliases("m", "k") == {SERVED: 1}


def test_set_alias_creates_and_moves_and_resolve_follows(store):
    """set_alias creates or moves an alias (served too) and resolve finds where it points."""
    _fit(store)
    _fit(store, promote="never")
    moved = store.set_alias("m", "k", "candidate", 2)
    assert (moved.version, moved.aliases) == (2, ("candidate",))
    assert store.resolve("m", "k", "candidate").version == 2
    store.set_alias("m", "k", "candidate", 1)
    assert store.version("m", "k", 1).aliases == ("candidate", SERVED)
    assert store.resolve("m", "k", "candidate").version == 1
    store.set_alias("m", "k", SERVED, 2)
    assert store.resolve("m", "k").version == 2
    assert store.aliases("m", "k") == {"candidate": 1, SERVED: 2}
    assert store.resolve("m", "k", "nope") is None
    assert store.resolve("m", "missing") is None


def test_delete_alias(store):
    """served is refused (Conflict); an unknown alias is False; a known one goes."""
    _fit(store)
    store.set_alias("m", "k", "x", 1)
    with pytest.raises(Conflict):
        store.delete_alias("m", "k", SERVED)
    assert store.delete_alias("m", "k", "nope") is False
    assert store.delete_alias("m", "k", "x") is True
    assert store.aliases("m", "k") == {SERVED: 1}


def test_updates_start_from_the_served_version(store):
    """claim_update's base is what `served` points at, not the newest FINISHED version; a
    base_id that is no longer served is stale."""
    _fit(store)
    _fit(store, promote="never")
    new, base = store.claim_update("m", "k", worker="w", lease_seconds=LEASE)
    assert (base.version, new.version) == (1, 3)
    store.fail(new.id, "boom")
    stale = store.version("m", "k", 2).id
    with pytest.raises(StaleBase):
        store.claim_update("m", "k", worker="w", lease_seconds=LEASE, base_id=stale)
    store.set_alias("m", "k", SERVED, 2)
    _, base = store.claim_update("m", "k", worker="w", lease_seconds=LEASE, base_id=stale)
    assert base.version == 2


def test_alias_moves_racing_deletes_never_leave_a_dangling_alias(store):
    """Threads moving an alias to a version while others delete it: each pair has exactly
    one winner, and every alias left points at a stored version."""
    for _ in range(12):
        _fit(store, promote="never")
    outcomes: dict[int, list[str]] = {n: [] for n in range(2, 13)}
    barrier = threading.Barrier(2)

    def move(number: int) -> None:
        barrier.wait()
        try:
            store.set_alias("m", "k", f"a{number}", number)
            outcomes[number].append("moved")
        except KeyNotFound:
            outcomes[number].append("gone")

    def delete(number: int) -> None:
        barrier.wait()
        try:
            store.delete_version("m", "k", number)
            outcomes[number].append("deleted")
        except Conflict:
            outcomes[number].append("kept")

    for number in outcomes:
        threads = [threading.Thread(target=f, args=(number,)) for f in (move, delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for number, seen in outcomes.items():
        assert sorted(seen) in (["kept", "moved"], ["deleted", "gone"]), (number, seen)
    stored = {v.version for v in store.versions("m", "k").items}
    assert set(store.aliases("m", "k").values()) <= stored


def _race(*calls: Callable[[], object]) -> list[object]:
    """Run `calls` in threads released at the same moment: each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = calls[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_pruning_racing_an_alias_move_never_leaves_a_dangling_alias(store):
    """A finish pruning old versions while another thread pins one of them: either the pin
    wins and the version stays, or the prune wins and the pin finds it gone."""
    for _ in range(6):
        _fit(store, promote="never")
    for round_ in range(6):
        # The oldest version but the served one (1), which is never pruned.
        target = store.versions("m", "k").items[-2].version
        running = _claim(store)
        pinned, finished = _race(
            lambda: store.set_alias("m", "k", f"pin{round_}", target),  # noqa: B023
            lambda: store.finish(running, _artifact(), promote="never", keep_versions=1),  # noqa: B023
        )
        assert finished is True
        assert isinstance(pinned, Version | KeyNotFound), pinned
        stored = {v.version for v in store.versions("m", "k").items}
        assert (target in stored) is isinstance(pinned, Version)
        assert set(store.aliases("m", "k").values()) <= stored
        for _ in range(3):
            _fit(store, promote="never")


# -- paging ----------------------------------------------------------------------------------


def test_versions_pages_newest_first(store):
    """limit and before walk the versions; next is the following page's before."""
    for _ in range(7):
        _fit(store, promote="never")
    first = store.versions("m", "k", limit=3)
    assert ([v.version for v in first.items], first.next) == ([7, 6, 5], 5)
    assert first.items[-1].aliases == () and store.versions("m", "k").items[-1].aliases == (SERVED,)
    second = store.versions("m", "k", limit=3, before=first.next)
    assert ([v.version for v in second.items], second.next) == ([4, 3, 2], 2)
    last = store.versions("m", "k", limit=3, before=second.next)
    assert ([v.version for v in last.items], last.next) == ([1], None)
    exact = store.versions("m", "k", limit=7)
    assert (len(exact.items), exact.next) == (7, None)
    assert store.versions("m", "k", before=1) == Page([], None)


KEYS = 10_000


def _bulk_keys(url: str) -> None:
    """KEYS keys of model "m", two versions each (every tenth one RUNNING, else FAILED)."""
    db = db_url.connect(url)
    rows = make_version_table(db)
    when = datetime(2026, 1, 1)
    data = [
        {
            "model": "m",
            "key": f"k{i:05d}",
            "version": version,
            "status": "FINISHED" if version == 1 else ("RUNNING" if i % 10 == 0 else "FAILED"),
            "created": when,
            "metadata": "{}",
        }
        for i in range(KEYS)
        for version in (1, 2)
    ]
    with db.connection_context(), db.atomic():
        for start in range(0, len(data), 2000):
            rows.insert_many(data[start : start + 2000]).execute()
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql(f"ANALYZE {TABLE_NAME}")
    db.close()


def test_keys_pages_over_ten_thousand_keys(store, store_url):
    """after, limit and status walk every key once, ascending, each page by the index."""
    store.prepare()
    _bulk_keys(store_url)
    seen: list[str] = []
    after = None
    while True:
        page = store.keys("m", limit=1000, after=after)
        seen += [v.key for v in page.items]
        assert all(v.version == 2 for v in page.items)
        if page.next is None:
            break
        assert page.next == page.items[-1].key
        after = page.next
    assert seen == [f"k{i:05d}" for i in range(KEYS)]
    running = store.keys("m", limit=600, status=Status.RUNNING)
    assert len(running.items) == 600 and running.next == "k05990"
    rest = store.keys("m", after=running.next, status=Status.RUNNING)
    assert (len(rest.items), rest.next) == (400, None)
    assert {v.status for v in running.items + rest.items} == {Status.RUNNING}
    assert store.keys("m", after="k09999") == Page([], None)
    assert len(store.keys("m").items) == KEYS


def test_a_keys_page_reads_by_the_key_index(store, store_url):
    """The query plan of a page walks the (model, key, version) index, not the table."""
    store.prepare()
    _bulk_keys(store_url)
    sql = store._compile_keys(True, False, True, False)
    db = db_url.connect(store_url)
    with db.connection_context():
        if isinstance(db, peewee.PostgresqlDatabase):
            plan = " ".join(r[0] for r in db.execute_sql(f"EXPLAIN {sql}", ["m", "k05000", 51]))
            assert "Index" in plan and "Seq Scan" not in plan, plan
        else:
            rows = db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", ["m", "k05000", 51])
            plan = " ".join(str(r[-1]) for r in rows)
            assert "USING INDEX versionrow_model_key_version" in plan, plan
            assert "SCAN" not in plan.replace("SCALAR", ""), plan
    db.close()


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda s: s.keys("m", after="a\x00"), "after"),
        (lambda s: s.keys("m", limit=0), "limit"),
        (lambda s: s.keys("m", status="DONE"), "status"),
        (lambda s: s.versions("m", "k", limit=0), "limit"),
        (lambda s: s.versions("m", "k", before=0), "before"),
        (lambda s: s.set_alias("m", "k", "a\x00", 1), "alias"),
        (lambda s: s.set_alias("m", "k", "", 1), "alias"),
        (lambda s: s.set_alias("m", "k", "a" * 129, 1), "alias"),
    ],
)
def test_bad_parameters_are_refused_naming_themselves(store, call, parameter):
    """A bad listing or alias parameter is InvalidPayload naming it, and changes nothing."""
    _fit(store)
    with pytest.raises(InvalidPayload) as refused:
        call(store)
    assert refused.value.parameter == parameter
    assert store.aliases("m", "k") == {SERVED: 1}
