"""Several server processes on one PostgreSQL behave as one service."""

from __future__ import annotations

import io
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LinearRegression

from mlserver.store import SQLStore
from support import (
    ServerProcess,
    fit_body,
    inputs_stored,
    predict,
    predictions,
    put,
    regression,
    request,
    settled,
    status,
    wait_until,
)

# Every test here starts two `ml-server serve` processes.
pytestmark = pytest.mark.slow

# Short leases so that a dead replica's job is taken for interrupted within seconds.
LEASES = {"MLSERVER_LEASE_SECONDS": "4", "MLSERVER_HEARTBEAT_SECONDS": "1"}


def replica(store_url: str) -> ServerProcess:
    """`ml-server serve` on the shared store with short leases, in its own process."""
    return ServerProcess(store_url, env=LEASES)


@pytest.fixture
def replicas(postgres_url):
    """Two replicas on the test's PostgreSQL database, stopped at the end."""
    started = [replica(postgres_url), replica(postgres_url)]
    yield started
    for server in started:
        server.stop()


def test_training_on_one_replica_is_served_by_the_other(replicas):
    """A PUT on A shows RUNNING then FINISHED on B, and B predicts what scikit-learn does."""
    a, b = replicas
    x, y = regression()
    key = put(a, "slow", x, y, algkwargs={"seconds": 1.0})
    assert status(b, "slow", key)["status"] == "RUNNING"
    wait_until(lambda: status(b, "slow", key)["status"] == "FINISHED")
    answer = predict(b, "slow", key, x)
    assert answer.status_code == 200
    got = pd.read_json(io.StringIO(answer.json()["y"]), orient="split")["target"]
    np.testing.assert_allclose(got.to_numpy(), LinearRegression().fit(x, y).predict(x))


def test_a_retrain_on_one_replica_is_served_by_the_other_within_the_bound(replicas):
    """Once A's retrain has finished, B answers from it within freshness_seconds (1 s)."""
    a, b = replicas
    x, y = regression()
    params = {"name": "shared", "algkwargs": {"seconds": 0}}
    body = fit_body(x, y, **params)
    key = put(a, "slow", x, y, **params)
    wait_until(lambda: status(a, "slow", key)["status"] == "FINISHED")
    assert predict(b, "slow", key, x.head(2)).json()["version"] == 1  # B caches version 1
    assert request(a, "PUT", "slow", json={**body, "retrain": True}).status_code == 202
    wait_until(lambda: status(a, "slow", key)["status"] == "FINISHED")
    finished = time.monotonic()
    wait_until(lambda: predict(b, "slow", key, x.head(2)).json()["version"] == 2, timeout=5)
    assert time.monotonic() - finished < 1.0 + 0.5  # the bound, plus one request's slack


def test_a_patch_right_after_another_replicas_update_starts_at_once(replicas):
    """B still caches version 1 when A's update writes version 2: B's PATCH is not refused
    for an outdated base; it updates version 2 into version 3."""
    a, b = replicas
    x, y = regression()
    key = put(a, "sgd", x, y)
    wait_until(lambda: status(a, "sgd", key)["status"] == "FINISHED")
    assert predict(b, "sgd", key, x.head(2)).json()["version"] == 1  # B caches version 1
    update = fit_body(x, y, **{"model-key": key})
    assert requests.patch(f"{a.url}/sgd", json=update, timeout=30).status_code == 202
    wait_until(lambda: status(a, "sgd", key)["status"] == "FINISHED")
    answer = requests.patch(f"{b.url}/sgd", json=update, timeout=30)
    assert answer.status_code == 202, answer.text
    assert answer.json()["version"] == 3
    wait_until(lambda: status(b, "sgd", key)["status"] == "FINISHED")
    assert status(b, "sgd", key)["metadata"]["base_version"] == 2


def test_the_same_put_on_both_replicas_starts_one_job(replicas):
    """Identical PUTs sent to A and B at the same moment start exactly one job each time."""
    a, b = replicas
    x, y = regression()
    for attempt in range(5):
        body = fit_body(x, y, name=f"race-{attempt}", algkwargs={"seconds": 0.3})
        barrier = threading.Barrier(2)
        answers: list[requests.Response] = []

        def send(replica, body=body, barrier=barrier, answers=answers):
            barrier.wait()
            answers.append(request(replica, "PUT", "slow", json=body))

        threads = [threading.Thread(target=send, args=(r,)) for r in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in answers) == [200, 202]
        assert {r.json()["version"] for r in answers} == {1}
        assert {r.json()["status"] for r in answers} == {"RUNNING"}


def test_a_killed_replicas_job_runs_again_on_the_other(postgres_url):
    """SIGKILL A mid-training: B runs the same job again (same version, attempt 2), once."""
    a, b = replica(postgres_url), replica(postgres_url)
    try:
        x, y = regression()
        key = put(a, "slow", x, y, name="rerun", algkwargs={"seconds": 2})
        wait_until(lambda: inputs_stored(postgres_url, "slow", key), timeout=10)
        a.stop(signal.SIGKILL)
        state = settled(b, "slow", key, timeout=30)
        assert state["status"] == "FINISHED" and state["version"] == 1, state
        store = SQLStore(postgres_url)
        try:
            version = store.version("slow", key, 1)
            assert version.attempts == 2 and int(version.worker.split(":")[2]) == b.process.pid
        finally:
            store.close()
        expected = LinearRegression().fit(x, y).predict(x)
        np.testing.assert_allclose(predictions(predict(b, "slow", key, x)), expected)
    finally:
        a.stop()
        b.stop()


def test_a_killed_replicas_job_without_stored_inputs_is_marked_interrupted(postgres_url):
    """Without stored training data, B marks A's version FAILED (interrupted) instead."""
    off = {**LEASES, "MLSERVER_STORE_TRAINING_DATA": "false"}
    a, b = ServerProcess(postgres_url, env=off), ServerProcess(postgres_url, env=off)
    try:
        x, y = regression()
        params = {"name": "doomed", "algkwargs": {"seconds": 60}}
        body = fit_body(x, y, **params)
        key = put(a, "slow", x, y, **params)
        assert status(b, "slow", key)["status"] == "RUNNING"
        a.stop(signal.SIGKILL)
        state = settled(b, "slow", key, timeout=15)
        assert state["status"] == "FAILED" and "interrupted" in state["error"]
        again = request(b, "PUT", "slow", json={**body, "algkwargs": {"seconds": 0}})
        assert again.status_code == 202 and again.json()["version"] == 2
    finally:
        a.stop()
        b.stop()
