"""End to end: a real `ml-server serve` process (waitress), a SQLite file, plain HTTP."""

from __future__ import annotations

import io
import signal
import threading

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LinearRegression, LogisticRegression

from support import (
    ServerProcess,
    classification,
    inputs_stored,
    predict,
    predict_body,
    predictions,
    put,
    regression,
    settled,
    status,
    wait_until,
)

# Every test here starts `ml-server serve` processes.
pytestmark = pytest.mark.slow


def labels(response: requests.Response) -> np.ndarray:
    """The first column of a predict answer."""
    frame = pd.read_json(io.StringIO(response.json()["y"]), orient="split")
    return frame.iloc[:, 0].to_numpy()


def test_fit_status_predict_over_http(sqlite_server):
    """Over real HTTP, a PUT trains and a POST answers what scikit-learn itself predicts."""
    server = sqlite_server
    x, y = classification()
    key = put(server, "logreg", x, y)
    assert settled(server, "logreg", key)["status"] == "FINISHED"
    response = predict(server, "logreg", key, x)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(labels(response), LogisticRegression().fit(x, y).predict(x))


def test_restart_keeps_models(sqlite_url):
    """A model trained before a restart is served, unchanged, by the next process."""
    x, y = classification()
    first = ServerProcess(sqlite_url)
    try:
        key = put(first, "logreg", x, y)
        settled(first, "logreg", key)
        before = predict(first, "logreg", key, x).json()
    finally:
        first.stop()
    second = ServerProcess(sqlite_url)
    try:
        assert predict(second, "logreg", key, x).json() == before
        assert status(second, "logreg", key)["version"] == 1
    finally:
        second.stop()


def test_killed_training_runs_again_after_the_restart(sqlite_url):
    """A server killed with SIGKILL mid-training: the restarted one runs that job again (the
    same version, attempt 2) from its stored inputs, and it serves the model it makes."""
    x, y = regression()
    first = ServerProcess(sqlite_url)
    key = put(first, "slow", x, y, name="cut-short", algkwargs={"seconds": 1})
    wait_until(lambda: inputs_stored(sqlite_url, "slow", key))
    first.stop(signal.SIGKILL)
    second = ServerProcess(sqlite_url)
    try:
        state = settled(second, "slow", key)
        assert state["status"] == "FINISHED" and state["version"] == 1, state
        history = requests.get(f"{second.url}/slow/{key}/versions/1", timeout=10).json()
        assert history["attempts"] == 2 and history["lineage"]["kind"] == "fit"
        expected = LinearRegression().fit(x, y).predict(x)
        np.testing.assert_allclose(predictions(predict(second, "slow", key, x)), expected)
    finally:
        second.stop()


def test_predictions_flow_while_the_key_retrains(sqlite_server):
    """Several threads predicting while the same key retrains see only 200s, v1 then v2."""
    server = sqlite_server
    x, y = regression()
    key = put(server, "slow", x, y, name="live", algkwargs={"seconds": 0})
    settled(server, "slow", key)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as session:
            body = predict_body(key, x.head(3))
            while not stop.is_set():
                response = session.post(f"{server.url}/slow", json=body, timeout=10)
                seen.append((response.status_code, response.json().get("version", 0)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        put(server, "slow", x, y, name="live", algkwargs={"seconds": 0.5}, retrain=True)
        assert settled(server, "slow", key)["version"] == 2
        wait_until(lambda: any(v == 2 for _, v in seen[-20:]))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert {code for code, _ in seen} == {200}
    assert {v for _, v in seen} == {1, 2}
    first_v2 = next(i for i, (_, v) in enumerate(seen) if v == 2)
    assert len(seen) > 20 and first_v2 > 0
