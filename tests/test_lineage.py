"""Lineage without HTTP: a Service on a real store keeps what each version learnt from, once
per distinct content; refits replay a key's history with the running libraries; a job a
dead process left behind runs again on a live one, exactly once, up to max_attempts."""

from __future__ import annotations

import io
import json
import subprocess
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, SGDRegressor

from mlserver.config import Settings
from mlserver.errors import Conflict, KeyNotFound
from mlserver.frames import stored
from mlserver.frames.keys import name_key
from mlserver.frames.orients import decode_training
from mlserver.inputs import record
from mlserver.leases import worker_id
from mlserver.lineage import fit_inputs
from mlserver.service import Service
from mlserver.store import SQLStore, Status
from support import raw_sql, registry, regression, wait_until


def as_decoded(x, y):
    """x and y as the server decodes them from the split JSON these tests send."""
    rows, target = decode_training(
        x.to_json(orient="split"), y.to_json(orient="split"), "split", max_rows=10**6,
        max_columns=10**4,
    )  # fmt: skip
    return rows.frame, target


def make_service(url: str, **settings) -> Service:
    return Service(registry(), SQLStore(url), settings=Settings(**settings))


@pytest.fixture
def service(store_url):
    service = make_service(store_url)
    yield service
    service.close()
    service.store.close()


def settle(service: Service, model: str, key: str, number: int):
    version = wait_until(
        lambda: (
            (v := service.store.version(model, key, number))
            and v.status is not Status.RUNNING
            and v
        )
    )
    assert version.status is Status.FINISHED, version.error
    return version


def fit(service: Service, x, y, model: str = "linreg", **params):
    claim = service.fit(
        model, x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split", **params
    )
    assert claim.created
    return settle(service, model, claim.version.key, claim.version.version)


def update(service: Service, key: str, x, y, model: str = "sgd"):
    version = service.update(
        model, key=key, x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split"
    )
    return settle(service, model, key, version.version)


def model_of(service: Service, version) -> object:
    return joblib.load(io.BytesIO(service.store.load_blob(version)))


def dead_worker() -> str:
    """The id a process on this host had before it exited: certainly dead."""
    child = subprocess.Popen(["true"])
    child.wait()
    alive = worker_id().split(":")
    return ":".join([alive[0], alive[1], str(child.pid), "deadbeef"])


def test_a_fit_keeps_its_data_once_per_content_and_gives_it_back(service):
    x, y = regression()
    first = fit(service, x, y, key_name="a")
    second = fit(service, x, y, key_name="b")
    assert first.lineage == {
        "data": stored.content_digest(*as_decoded(x, y)),
        "rows": len(x),
        "columns": x.shape[1],
        "parent": None,
        "kind": "fit",
        "source": None,
    }
    assert second.lineage["data"] == first.lineage["data"]
    datasets, size, raw = service.store.data_usage()
    assert datasets == 1 and size > 0 and raw >= x.memory_usage(deep=True).sum()
    got_x, got_y = service.lineage.data("linreg", key=first.key, version=1)
    pd.testing.assert_frame_equal(got_x, x, check_exact=True)
    pd.testing.assert_series_equal(got_y, y, check_exact=True)


def test_data_of_a_version_without_stored_data_is_not_found(store_url):
    service = make_service(store_url, store_training_data=False)
    try:
        x, y = regression()
        version = fit(service, x, y)
        assert version.lineage["data"] is None and version.lineage["kind"] == "fit"
        assert service.store.data_usage()[0] == 0
        with pytest.raises(KeyNotFound, match="not stored"):
            service.lineage.data("linreg", key=version.key, version=1)
        with pytest.raises(Conflict, match="cannot be refitted"):
            service.lineage.refit("linreg", key=version.key)
    finally:
        service.close()
        service.store.close()


def test_a_dataset_above_max_stored_data_bytes_is_not_stored(store_url):
    service = make_service(store_url, max_stored_data_bytes=64)
    try:
        x, y = regression()
        version = fit(service, x, y)
        assert version.lineage["data"] is None
        assert service.store.data_usage()[0] == 0
    finally:
        service.close()
        service.store.close()


def test_refit_replays_fit_update_update_as_scikit_learn_does(service):
    """The refit of fit, update, update is the same model that history made, and the one
    scikit-learn makes from the same calls."""
    x, y = regression(rows=90)
    parts = [(x.iloc[i * 30 : (i + 1) * 30], y.iloc[i * 30 : (i + 1) * 30]) for i in range(3)]
    modkwargs = {"random_state": 3, "max_iter": 50, "tol": None}
    claim = service.fit(
        "sgd",
        x=parts[0][0].to_json(orient="split"),
        y=parts[0][1].to_json(orient="split"),
        orient="split",
        modkwargs=modkwargs,
    )
    key = claim.version.key
    settle(service, "sgd", key, 1)
    update(service, key, *parts[1])
    third = update(service, key, *parts[2])
    assert third.lineage["parent"] == 2 and third.lineage["kind"] == "update"
    digests = tuple(stored.content_digest(*as_decoded(*part)) for part in parts)
    assert service.store.steps(third.id) == digests

    refit = service.lineage.refit("sgd", key=key)
    assert refit.created
    fourth = settle(service, "sgd", key, refit.version.version)
    assert fourth.lineage == {**third.lineage, "parent": None, "kind": "refit", "source": 3}
    assert service.store.aliases("sgd", key)["served"] == 4

    expected = SGDRegressor(**modkwargs).fit(*parts[0])
    expected.partial_fit(*parts[1])
    expected.partial_fit(*parts[2])
    for version in (third, fourth):
        got = model_of(service, version)
        np.testing.assert_array_equal(got.coef_, expected.coef_)
        np.testing.assert_array_equal(got.intercept_, expected.intercept_)

    # A refit of a refit replays the same history.
    again = service.lineage.refit("sgd", key=key, version=4, promote="never")
    fifth = settle(service, "sgd", key, again.version.version)
    assert fifth.lineage["source"] == 4 and fifth.metrics["promoted"] is False
    np.testing.assert_array_equal(model_of(service, fifth).coef_, expected.coef_)


def test_refit_refuses_what_it_cannot_do(service):
    x, y = regression()
    version = fit(service, x, y)
    with pytest.raises(KeyNotFound):
        service.lineage.refit("linreg", key=version.key, version=7)
    with pytest.raises(KeyNotFound):
        service.lineage.refit("linreg", key="0" * 32)
    raw_sql(service.store.url, "UPDATE {table} SET job = NULL")
    with pytest.raises(Conflict, match="not stored"):
        service.lineage.refit("linreg", key=version.key)


def test_skewed_lists_served_versions_of_other_libraries_and_a_refit_ends_it(service):
    x, y = regression()
    old = fit(service, x, y, key_name="old")
    fit(service, x, y, key_name="current")
    metadata = dict(old.metadata)
    metadata["libraries"] = {**metadata["libraries"], "scikit-learn": "0.24.2"}
    raw_sql(
        service.store.url,
        "UPDATE {table} SET metadata = ? WHERE id = ?",
        (json.dumps(metadata), old.id),
    )
    service.served.forget("linreg", old.key)
    found = list(service.lineage.skewed())
    assert [(s.version.key, s.version.version) for s in found] == [(old.key, 1)]
    assert "scikit-learn 0.24.2" in found[0].warnings[0]
    claim = service.lineage.refit("linreg", key=old.key)
    settle(service, "linreg", old.key, claim.version.version)
    assert list(service.lineage.skewed()) == []


def lost_fit(store: SQLStore, x, y, *, worker: str, model: str = "linreg", attempts: int = 1):
    """A RUNNING fit of `x`, `y` whose inputs are stored, held by `worker`."""
    key = f"lost-{attempts}"
    claim = store.claim(model, key, worker=worker, lease_seconds=30, retrain=False)
    job = {"modkwargs": {}, "algkwargs": {}, "validation": None, "scoring": None}
    job |= {"promote": "always", "name": None}
    record(store, Settings(), claim.version, fit_inputs(x, y, job))
    if attempts > 1:
        raw_sql(
            store.url, "UPDATE {table} SET attempts = ? WHERE id = ?", (attempts, claim.version.id)
        )
    return claim.version


def test_a_job_left_by_a_dead_process_runs_again_once(store_url):
    x, y = regression()
    store = SQLStore(store_url)
    lost = lost_fit(store, x, y, worker=dead_worker())
    replicas = [make_service(store_url) for _ in range(2)]
    try:
        threads = [threading.Thread(target=r.jobs.sweep) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        version = settle(replicas[0], "linreg", lost.key, 1)
        assert version.id == lost.id and version.attempts == 2
        assert version.worker in {r.jobs.worker for r in replicas}
        expected = LinearRegression().fit(x, y)
        np.testing.assert_array_equal(model_of(replicas[0], version).coef_, expected.coef_)
        assert store.aliases("linreg", lost.key) == {"served": 1}
    finally:
        for replica in replicas:
            replica.close()
            replica.store.close()
        store.close()


def test_a_job_that_ran_max_attempts_times_fails_interrupted(store_url):
    x, y = regression()
    store = SQLStore(store_url)
    lost = lost_fit(store, x, y, worker=dead_worker(), attempts=3)
    service = make_service(store_url, max_attempts=3)
    try:
        service.start()
        version = store.version("linreg", lost.key, 1)
        assert version.status is Status.FAILED and version.error.startswith("interrupted")
        assert version.attempts == 3
    finally:
        service.close()
        service.store.close()
        store.close()


def test_a_dataset_goes_with_the_last_version_that_learnt_from_it(store_url):
    """Shared by two keys and a refit, a dataset outlives each of them but the last: deleted
    with a key, with one version, and by keep_versions' pruning."""
    service = make_service(store_url, keep_versions=2)
    store = service.store
    try:
        x, y = regression()
        a = fit(service, x, y, key_name="a")
        fit(service, x, y, key_name="b")
        other_x, other_y = regression(rows=30, seed=5)
        fit(service, other_x, other_y, key_name="c")
        assert store.data_usage()[0] == 2
        service.delete("linreg", key=a.key)
        assert store.data_usage()[0] == 2  # b still learnt from it

        b_key = name_key("b")
        b = store.newest("linreg", b_key)
        refit = service.lineage.refit("linreg", key=b_key)
        settle(service, "linreg", b_key, refit.version.version)
        store.set_alias("linreg", b_key, "served", 2)
        store.delete_version("linreg", b_key, 1)
        assert store.data_usage()[0] == 2  # the refit learnt from it too
        assert store.load_dataset(b.lineage["data"]).rows == len(x)

        # keep_versions=2: each new version of c prunes the oldest, and its data with it.
        c_key = name_key("c")
        c1 = store.version("linreg", c_key, 1)
        claim = service.fit(
            "linreg", x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split",
            key_name="c", retrain=True,
        )  # fmt: skip
        settle(service, "linreg", c_key, claim.version.version)
        again = service.fit(
            "linreg", x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split",
            key_name="c", retrain=True,
        )  # fmt: skip
        settle(service, "linreg", c_key, again.version.version)
        assert store.version("linreg", c_key, 1) is None
        assert c1.lineage["data"] not in store.stored_datasets((c1.lineage["data"],))
        assert store.data_usage()[0] == 1

        service.delete("linreg", key=b_key)
        service.delete("linreg", key=c_key)
        assert store.data_usage() == (0, 0, 0)
    finally:
        service.close()
        store.close()
