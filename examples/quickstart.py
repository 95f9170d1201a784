"""Serve a logistic regression on SQLite, train it over HTTP, predict, print the result.

Run it with `python examples/quickstart.py`: it starts a real server on a free port with a
temporary database, talks plain HTTP to it and stops it again.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _http import call, serve_in_background, wait_finished
from sklearn.linear_model import LogisticRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlserver-quickstart-"))
    registry = Registry([wrap_estimator(LogisticRegression, "logistic")])
    app = create_app(registry, SQLStore(f"sqlite:///{workdir / 'models.db'}"))
    base, stop = serve_in_background(app)
    url = f"{base}/logistic"
    print(f"serving {url} on {workdir / 'models.db'}")

    rng = np.random.default_rng(42)
    x = pd.DataFrame(rng.normal(size=(500, 4)), columns=["f1", "f2", "f3", "f4"])
    y = pd.Series((x["f1"] - x["f2"] + 0.3 * x["f3"] > 0).astype(int), name="label")
    train, test = x.iloc[:400], x.iloc[400:]

    started = time.perf_counter()
    # y goes as a one-column frame: the default orient ("columns") keeps its name that way,
    # so predictions come back in a column named "label".
    answer = call("PUT", url, {"x": train.to_json(), "y": y.iloc[:400].to_frame().to_json()})
    key = answer["model-key"]
    print(f"PUT    -> {answer['status']}, model-key {key}")
    status = wait_finished(url, key)
    print(f"GET    -> {status['status']} version {status['version']}")

    answer = call("POST", url, {"x": test.to_json(), "model-key": key})
    predicted = pd.read_json(io.StringIO(answer["y"]))["label"]
    elapsed = time.perf_counter() - started
    accuracy = float((predicted.to_numpy() == y.iloc[400:].to_numpy()).mean())
    print(f"POST   -> {len(predicted)} predictions, accuracy {accuracy:.3f}")
    print(f"fit + predict round trip over HTTP: {elapsed * 1000:.0f} ms")

    stop()


if __name__ == "__main__":
    main()
