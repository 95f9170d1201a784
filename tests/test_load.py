"""Load: many clients predicting while one key retrains and others are deleted and re-created.

One real `ml-server serve` process on a SQLite file; 16 client threads, one retraining thread,
one deleting and re-creating thread, all for a fixed, short time.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LinearRegression

from mlserver.store import SQLStore
from support import put, regression, status, wait_until

# It starts an `ml-server serve` process.
pytestmark = pytest.mark.slow

CLIENTS = 16
SECONDS = 10.0
CHURNED = 4  # keys deleted and re-created over and over
X, Y = regression()
TRAIN = {"x": X.to_json(orient="split"), "y": Y.to_json(orient="split"), "orient": "split"}
QUERY = X.head(4)
EXPECTED = LinearRegression().fit(X, Y).predict(QUERY)


def predicted(response: requests.Response) -> np.ndarray:
    frame = pd.read_json(io.StringIO(response.json()["y"]), orient="split")
    return frame.iloc[:, 0].to_numpy()


def test_predictions_under_retrain_and_churn_see_only_documented_answers(sqlite_server, sqlite_url):
    """16 clients predicting while a key retrains and others are deleted get only 200s (404 or
    409 for the churned keys), and the retrained key's versions are FINISHED and never go back."""
    server = sqlite_server
    hot = put(server, "slow", X, Y, name="hot", algkwargs={"seconds": 0})
    churned = [put(server, "linreg", X, Y, name=f"churn-{i}") for i in range(CHURNED)]
    keys = [("slow", hot)] + [("linreg", key) for key in churned]
    wait_until(lambda: all(status(server, m, k)["status"] == "FINISHED" for m, k in keys))

    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    answers: Counter[tuple[str, int]] = Counter()  # ("hot" or "churn", status code)
    hot_versions: dict[int, list[int]] = defaultdict(list)  # client -> versions, in order
    retrains: list[int] = []
    deletes: list[int] = []

    def client(index: int) -> None:
        rng = random.Random(index)
        body = {"x": QUERY.to_json(orient="split"), "orient": "split"}
        with requests.Session() as session:
            while not stop.is_set():
                which = "hot" if rng.random() < 0.5 else "churn"
                model, key = ("slow", hot) if which == "hot" else ("linreg", rng.choice(churned))
                try:
                    response = session.post(
                        f"{server.url}/{model}", json={**body, "model-key": key}, timeout=30
                    )
                except requests.RequestException as exc:
                    errors.append(f"client {index}: {type(exc).__name__}: {exc}")
                    return
                with lock:
                    answers[(which, response.status_code)] += 1
                allowed = (200,) if which == "hot" else (200, 404, 409)
                if response.status_code not in allowed:
                    errors.append(f"POST {model} {which}: {response.status_code} {response.text}")
                    continue
                if response.status_code == 409 and response.json().get("status") != "RUNNING":
                    errors.append(f"POST {model} {which}: 409 not for RUNNING {response.text}")
                if response.status_code != 200:
                    continue
                if which == "hot":
                    hot_versions[index].append(response.json()["version"])
                if not np.allclose(predicted(response), EXPECTED, rtol=1e-9, atol=1e-9):
                    errors.append(f"POST {model} {which}: wrong predictions {response.text}")

    def retrain() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                params = {**TRAIN, "name": "hot", "retrain": True, "algkwargs": {"seconds": 0.05}}
                response = session.put(f"{server.url}/slow", json=params, timeout=30)
                if response.status_code == 202:
                    retrains.append(response.json()["version"])
                elif response.status_code != 200:  # 200: a version is still RUNNING
                    errors.append(f"PUT hot: {response.status_code} {response.text}")
                time.sleep(0.05)

    def churn() -> None:
        rng = random.Random(-1)
        with requests.Session() as session:
            while not stop.is_set():
                key = rng.choice(churned)
                name = f"churn-{churned.index(key)}"
                gone = session.delete(f"{server.url}/linreg", params={"model-key": key}, timeout=30)
                if gone.status_code != 200:  # this thread re-creates each key it deletes
                    errors.append(f"DELETE: {gone.status_code} {gone.text}")
                deletes.append(gone.status_code)
                again = session.put(
                    f"{server.url}/linreg", json={**TRAIN, "name": name}, timeout=30
                )
                if again.status_code != 202 or again.json()["model-key"] != key:
                    errors.append(f"PUT churn: {again.status_code} {again.text}")
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=retrain), threading.Thread(target=churn)]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert errors == [], errors[:20]
    for index, versions in hot_versions.items():
        assert versions == sorted(versions), f"client {index} went back: {versions}"
    store = SQLStore(sqlite_url)
    try:
        seen = {v for versions in hot_versions.values() for v in versions}
        statuses = {v.version: v.status.value for v in store.versions("slow", hot).items}
        assert {v: statuses.get(v) for v in seen} == dict.fromkeys(seen, "FINISHED")
    finally:
        store.close()
    # The load was real: many answers, several retrained versions served, keys really churned.
    assert sum(answers.values()) > 20 * CLIENTS, answers
    assert len(retrains) >= 10 and len(seen) >= 3, (retrains, sorted(seen))
    assert deletes.count(200) >= 10 and answers[("churn", 200)] > 0, (deletes, answers)
