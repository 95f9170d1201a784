"""The HTTP API with nothing but `requests`: what any language can do without the Python client.

The data go as the text `DataFrame.to_json(orient="split")` writes, with `orient` saying so, as
the original clients sent them; `name` derives the model-key from the data set's name. Then:
poll GET until training ends, POST to predict, print the precision on held-out rows.

Run it with `python examples/raw_http.py`: it starts its own server on a free port with a
temporary SQLite database (the only part that needs mlserver) and stops it at the end.
"""

from __future__ import annotations

import io
import tempfile
import time

import pandas as pd
import requests
from _http import serve_in_background
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import precision_score

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlserver-", ignore_cleanup_errors=True) as workdir:
        registry = Registry([wrap_estimator(RandomForestClassifier, "forest")])
        app = create_app(registry, SQLStore(f"sqlite:///{workdir}/models.db"))
        base, stop = serve_in_background(app)
        try:
            run(f"{base}/forest")
        finally:
            stop()


def run(url: str) -> None:
    data = load_breast_cancer(as_frame=True)
    x = data.data
    y = (data.target == 0).astype(int).rename("malignant")  # 0 is malignant in this data set
    test = x.index % 4 == 0
    x_train, x_test, y_train, y_test = x[~test], x[test], y[~test], y[test]

    body = {
        "x": x_train.to_json(orient="split"),
        "y": y_train.to_json(orient="split"),
        "orient": "split",
        "name": "breast-cancer",
        "modkwargs": {"n_estimators": 50, "random_state": 0},
    }
    answer = requests.put(url, json=body, timeout=30)
    answer.raise_for_status()
    key = answer.json()["model-key"]
    print(f"PUT  {answer.status_code} -> model-key {key}, {answer.json()['status']}")

    started = time.perf_counter()
    while True:  # training runs in the background; GET reports RUNNING, FINISHED or FAILED
        status = requests.get(url, params={"model-key": key}, timeout=30).json()
        if status["status"] != "RUNNING":
            break
        time.sleep(0.1)
    if status["status"] != "FINISHED":
        raise SystemExit(f"training failed: {status['error']}")
    waited = time.perf_counter() - started
    print(f"GET  200 -> {status['status']} version {status['version']} after {waited:.1f} s")

    body = {"x": x_test.to_json(orient="split"), "orient": "split", "model-key": key}
    answer = requests.post(url, json=body, timeout=30)
    answer.raise_for_status()
    # `y` comes back in the form and orient x was sent in: pandas JSON text, orient split.
    predicted = pd.read_json(io.StringIO(answer.json()["y"]), orient="split")["malignant"]
    print(f"POST {answer.status_code} -> {len(predicted)} predictions")
    print(f"precision {precision_score(y_test, predicted.loc[y_test.index]):.3f}")


if __name__ == "__main__":
    main()
