"""Crash safety: `ml-server serve` killed with SIGKILL at random moments, restarted each time.

Each round starts a server on the same store, checks what the previous crash left, then loads it
with training (slow fits queued on the pool, retrains of one key, updates) and predictions
from several threads, and kills it after a random delay (seeded: the same moments every run).
A job the kill cut short runs again on the next server when its inputs were stored.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from typing import Any

import numpy as np
import pytest
import requests

from mlserver.serializers.base import resolve_serializer
from mlserver.store import SQLStore, Status
from support import ServerProcess, put, regression, settled, wait_until

# Every test here starts and kills `ml-server serve` processes.
pytestmark = pytest.mark.slow

ROUNDS = 10
SEED = 20261
PREDICTORS = 4
X, Y = regression()
SPLIT = {"x": X.to_json(orient="split"), "y": Y.to_json(orient="split"), "orient": "split"}
ROWS = {"x": X.head(5).to_json(orient="split"), "orient": "split"}
# How a request to a killed server ends: refused, reset, or cut off in the middle of the answer.
BROKEN = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


Server = ServerProcess


# -- the store, read as a client of it ----------------------------------------------------------

Row = tuple[str, str, int]  # model, key, version
MODELS = ("slow", "sgd")  # every model the load trains


def read_versions(url: str, *, blobs: bool = False) -> dict[Row, dict[str, Any]]:
    """Every version the load can have stored, read through the store's public API: status,
    error, serializer, sha256 (and with `blobs`, the blob of each FINISHED one)."""
    store = SQLStore(url)
    try:
        found = {}
        for model in MODELS:
            for newest in store.keys(model).items:
                for v in store.versions(model, newest.key).items:
                    finished = blobs and v.status is Status.FINISHED
                    found[(model, v.key, v.version)] = {
                        "status": v.status.value,
                        "error": v.error,
                        "serializer": v.serializer,
                        "sha256": v.sha256,
                        "blob": store.load_blob(v) if finished else None,
                        "attempts": v.attempts,
                        "inputs": bool(v.job),
                        "pid": int(v.worker.split(":")[2]) if v.worker else None,
                    }
        return found
    finally:
        store.close()


def finished(versions: dict[Row, dict[str, Any]]) -> dict[Row, str]:
    return {row: v["sha256"] for row, v in versions.items() if v["status"] == "FINISHED"}


# -- the load ------------------------------------------------------------------------------


class Load:
    """Training and predicting threads against one server until it dies or `stop` is set.

    Every answer the server gives (before the connection breaks) must be one the contract
    allows; anything else is collected in `unexpected`.
    """

    def __init__(
        self, url: str, rng: random.Random, round_: int, predict_keys: list, sgd_key: str
    ) -> None:
        self.url = url
        self.round = round_
        self.predict_keys = predict_keys  # (model, key) pairs with a FINISHED version
        self.sgd_key = sgd_key  # updated (PATCH) by the training thread
        self.stop = threading.Event()
        self.unexpected: list[str] = []
        self.predictions = 0
        self.training_steps = 0
        self._lock = threading.Lock()
        # Drawn here, not in the threads: the seeded RNG then gives the same plan every run.
        self.fit_seconds = [round(rng.uniform(0.05, 0.5), 3) for _ in range(40)]
        self.threads = [threading.Thread(target=self._train, daemon=True)]
        self.threads += [
            threading.Thread(target=self._predict, args=(i,), daemon=True)
            for i in range(PREDICTORS)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _note(self, what: str, response: requests.Response, allowed: tuple[int, ...]) -> None:
        if response.status_code not in allowed:
            with self._lock:
                self.unexpected.append(f"{what}: {response.status_code} {response.text[:200]}")

    def _train(self) -> None:
        """Each step: a new key on `slow`, a retrain of the shared key, an update of sgd's."""
        with requests.Session() as session:
            for i, seconds in enumerate(self.fit_seconds):
                if self.stop.is_set():
                    return
                new = {**SPLIT, "name": f"r{self.round}-{i}", "algkwargs": {"seconds": seconds}}
                shared = {**SPLIT, "name": "shared", "retrain": True}
                shared["algkwargs"] = {"seconds": seconds / 2}
                update = {**SPLIT, "model-key": self.sgd_key}
                try:
                    answer = session.put(f"{self.url}/slow", json=new, timeout=30)
                    # 503: the queue is full (jobs a kill cut short run again after it)
                    self._note("PUT new key", answer, (202, 503))
                    answer = session.put(f"{self.url}/slow", json=shared, timeout=30)
                    self._note("PUT shared", answer, (200, 202, 503))  # 200: still RUNNING
                    answer = session.patch(f"{self.url}/sgd", json=update, timeout=30)
                    self._note("PATCH sgd", answer, (202, 409, 503))  # 409: one RUNNING
                except BROKEN:
                    return
                with self._lock:
                    self.training_steps += 1
                time.sleep(0.05)

    def _predict(self, index: int) -> None:
        keys = self.predict_keys
        with requests.Session() as session:
            n = index
            while keys and not self.stop.is_set():
                model, key = keys[n % len(keys)]
                n += 1
                try:
                    response = session.post(
                        f"{self.url}/{model}", json={**ROWS, "model-key": key}, timeout=30
                    )
                except BROKEN:
                    return
                self._note(f"POST {model} {key}", response, (200,))
                with self._lock:
                    self.predictions += 1


def check_after_restart(server: Server, store_url: str, before: dict[Row, str]) -> dict[Row, str]:
    """What a restarted server must show: nothing RUNNING but jobs that run again, nothing
    FINISHED lost, every FINISHED blob matching its sha256, loading and predicting (the
    served version, or one that finished since we looked, over HTTP)."""
    url = server.url
    versions = read_versions(store_url, blobs=True)
    # Jobs with stored inputs run again: some already on the new server, the others (beyond
    # the half of its queue it gives them) at a later sweep.
    running = [
        row
        for row, v in versions.items()
        if v["status"] == "RUNNING"
        and not (v["pid"] == server.process.pid and v["attempts"] > 1)
        and not (v["inputs"] and v["attempts"] < 3)
    ]
    assert running == [], f"left RUNNING after the start-up sweep: {running}"
    now = finished(versions)
    lost = {row: sha for row, sha in before.items() if now.get(row) != sha}
    assert lost == {}, f"FINISHED before the crash, lost or changed after it: {lost}"
    newest: dict[tuple[str, str], int] = {}
    for (model, key, version), v in versions.items():
        if v["status"] != "FINISHED":
            continue
        assert hashlib.sha256(v["blob"]).hexdigest() == v["sha256"], (model, key, version)
        fitted = resolve_serializer(v["serializer"]).loads(v["blob"])
        assert np.isfinite(fitted.predict(X.head(3))).all(), (model, key, version)
        newest[(model, key)] = max(version, newest.get((model, key), 0))
    with requests.Session() as session:
        for (model, key), version in newest.items():
            body = {**ROWS, "model-key": key}
            response = session.post(f"{url}/{model}", json=body, timeout=30)
            assert response.status_code == 200, (model, key, response.text)
            assert response.json()["version"] >= version, (model, key)
    return now


def test_sigkill_during_training_and_predictions_loses_nothing_finished(store_url):
    """Killed at random moments under load, a restarted server has no RUNNING version, lost no
    FINISHED one, and every FINISHED blob matches its sha256 and predicts."""
    rng = random.Random(SEED)
    before: dict[Row, str] = {}
    kills = 0
    steps = predictions = 0
    server = Server(store_url)
    try:
        # Keys to predict with and to update, FINISHED before the first crash.
        base = put(server, "slow", X, Y, name="base")
        sgd_key = put(server, "sgd", X, Y, name="sgd-base")
        predict_keys = [("slow", base), ("sgd", sgd_key)]
        for model, key in predict_keys:
            assert settled(server, model, key, timeout=30)["status"] == "FINISHED"
        for round_ in range(ROUNDS):
            load = Load(server.url, rng, round_, predict_keys, sgd_key)
            delay = rng.uniform(0.2, 1.2)
            with load:
                time.sleep(delay)
                wait_until(lambda load=load: load.training_steps and load.predictions, timeout=10)
                before = finished(read_versions(store_url))
                server.kill()
                kills += 1
            assert load.unexpected == [], load.unexpected
            steps += load.training_steps
            predictions += load.predictions
            server = Server(store_url)
            now = check_after_restart(server, store_url, before)
            predict_keys = sorted({(m, k) for m, k, _ in now if m in ("slow", "sgd")})
        assert kills >= 10
        wait_until(
            lambda: all(v["status"] != "RUNNING" for v in read_versions(store_url).values()), 60
        )
        stored = read_versions(store_url).values()
        # Only the kills failed any job, and only one whose inputs were not stored yet or
        # that was cut short max_attempts (3) times; others ran again and finished.
        failed = [v for v in stored if v["status"] == "FAILED"]
        assert all(v["error"].startswith("interrupted") for v in failed), failed
        assert all(not v["inputs"] or v["attempts"] == 3 for v in failed), failed
        rerun = [v for v in stored if v["status"] == "FINISHED" and v["attempts"] > 1]
        assert rerun, "no job cut short by a kill ran again"
        assert steps > 2 * ROUNDS and predictions > 10 * ROUNDS, (steps, predictions)
        assert server.stop() == 0
    finally:
        server.kill()
