"""Serve a logistic regression on SQLite, train it over HTTP with the Python client, predict.

Run it with `python examples/quickstart.py`: it starts a real server on a free port with a
temporary database, trains and predicts through `ModelClient` (the estimator idiom over HTTP),
prints the accuracy and stops the server again.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _http import serve_in_background
from sklearn.linear_model import LogisticRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.client import ModelClient
from mlserver.store import SQLStore


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlserver-", ignore_cleanup_errors=True) as workdir:
        database = Path(workdir) / "models.db"
        registry = Registry([wrap_estimator(LogisticRegression, "logistic")])
        url, stop = serve_in_background(create_app(registry, SQLStore(f"sqlite:///{database}")))
        print(f"serving {url}/logistic on {database}")
        try:
            run(url)
        finally:
            stop()


def run(url: str) -> None:
    rng = np.random.default_rng(42)
    x = pd.DataFrame(rng.normal(size=(500, 4)), columns=["f1", "f2", "f3", "f4"])
    y = pd.Series((x["f1"] - x["f2"] + 0.3 * x["f3"] > 0).astype(int), name="label")
    x_train, x_test, y_train, y_test = x.iloc[:400], x.iloc[400:], y.iloc[:400], y.iloc[400:]

    with ModelClient(url, "logistic") as client:
        started = time.perf_counter()
        key = client.fit(x_train, y_train)  # PUT, then polls GET until training has finished
        predicted = client.predict(x_test, key)  # POST: a Series named "label" on x_test's index
        elapsed = time.perf_counter() - started

        status = client.status(key)
        print(f"fit     -> model-key {key}, {status['status']} version {status['version']}")
        accuracy = float((predicted == y_test).mean())
        print(f"predict -> {len(predicted)} predictions, accuracy {accuracy:.3f}")
        print(f"fit + predict round trip over HTTP: {elapsed * 1000:.0f} ms")


if __name__ == "__main__":
    main()
