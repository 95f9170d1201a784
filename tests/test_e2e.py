"""End to end: a real waitress server in its own process, a SQLite file, plain HTTP."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from support import classification, regression, wait_until

HERE = Path(__file__).parent


class Server:
    """One server process on a store URL; `url` is where it listens."""

    def __init__(self, store_url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), store_url],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening on "), f"server did not start: {line!r}"
        self.url = line.split()[-1]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)
        self.process.stdout.close()


@pytest.fixture
def server(sqlite_url):
    server = Server(sqlite_url)
    yield server
    server.stop()


def status(server: Server, model: str, key: str) -> dict:
    return requests.get(f"{server.url}/{model}", params={"model-key": key}, timeout=10).json()


def settled(server: Server, model: str, key: str) -> dict:
    return wait_until(lambda: (s := status(server, model, key))["status"] != "RUNNING" and s)


def fit(server: Server, model: str, x, y, **params) -> str:
    body = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
    response = requests.put(f"{server.url}/{model}", json={**body, **params}, timeout=10)
    assert response.status_code in (200, 202), response.text
    return response.json()["model-key"]


def predict(server: Server, model: str, key: str, x) -> requests.Response:
    body = {"x": x.to_json(orient="split"), "orient": "split", "model-key": key}
    return requests.post(f"{server.url}/{model}", json=body, timeout=10)


def labels(response: requests.Response) -> np.ndarray:
    frame = pd.read_json(io.StringIO(response.json()["y"]), orient="split")
    return frame.iloc[:, 0].to_numpy()


def test_fit_status_predict_over_http(server):
    """Over real HTTP, a PUT trains and a POST answers what scikit-learn itself predicts."""
    x, y = classification()
    key = fit(server, "logreg", x, y)
    assert settled(server, "logreg", key)["status"] == "FINISHED"
    response = predict(server, "logreg", key, x)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(labels(response), LogisticRegression().fit(x, y).predict(x))


def test_restart_keeps_models(sqlite_url):
    """A model trained before a restart is served, unchanged, by the next process."""
    x, y = classification()
    first = Server(sqlite_url)
    try:
        key = fit(first, "logreg", x, y)
        settled(first, "logreg", key)
        before = predict(first, "logreg", key, x).json()
    finally:
        first.stop()
    second = Server(sqlite_url)
    try:
        assert predict(second, "logreg", key, x).json() == before
        assert status(second, "logreg", key)["version"] == 1
    finally:
        second.stop()


def test_killed_training_comes_back_failed(sqlite_url):
    """A server killed with SIGKILL mid-training: on restart that version is FAILED, interrupted."""
    x, y = regression()
    first = Server(sqlite_url)
    key = fit(first, "slow", x, y, name="doomed", algkwargs={"seconds": 60})
    assert status(first, "slow", key)["status"] == "RUNNING"
    first.stop(signal.SIGKILL)
    second = Server(sqlite_url)
    try:
        state = status(second, "slow", key)
        assert state["status"] == "FAILED" and "interrupted" in state["error"]
        again = requests.put(
            f"{second.url}/slow",
            json={
                "x": x.to_json(orient="split"),
                "y": y.to_json(orient="split"),
                "orient": "split",
                "name": "doomed",
                "algkwargs": {"seconds": 0},
            },
            timeout=10,
        )
        assert again.status_code == 202 and again.json()["version"] == 2
    finally:
        second.stop()


def test_predictions_flow_while_the_key_retrains(server):
    """Several threads predicting while the same key retrains see only 200s, v1 then v2."""
    x, y = regression()
    key = fit(server, "slow", x, y, name="live", algkwargs={"seconds": 0})
    settled(server, "slow", key)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as session:
            body = {"x": x.head(3).to_json(orient="split"), "orient": "split", "model-key": key}
            while not stop.is_set():
                response = session.post(f"{server.url}/slow", json=body, timeout=10)
                seen.append((response.status_code, response.json().get("version", 0)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        fit(server, "slow", x, y, name="live", algkwargs={"seconds": 0.5}, retrain=True)
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
