"""Online learning: train an SGD regressor, then PATCH it with new batches as they arrive.

Each PATCH adds a version updated with `partial_fit` from the newest finished one; POST always
answers from the newest finished version.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
from _http import call, serve_in_background, wait_finished
from sklearn.linear_model import SGDRegressor

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore


def batch(rng: np.random.Generator, rows: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    x = pd.DataFrame(rng.normal(size=(rows, 2)), columns=["u", "v"])
    y = pd.DataFrame({"target": 4 * x["u"] - 3 * x["v"] + rng.normal(scale=0.05, size=rows)})
    return x, y


def main() -> None:
    registry = Registry([wrap_estimator(SGDRegressor, "sgd", update="partial_fit")])
    store = SQLStore(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-online-')}/models.db")
    app = create_app(registry, store)
    base, stop = serve_in_background(app)
    url = f"{base}/sgd"
    rng = np.random.default_rng(1)
    probe = pd.DataFrame({"u": [1.0], "v": [1.0]})  # true value: 4 - 3 = 1

    x, y = batch(rng, rows=20)
    body = {"x": x.to_json(), "y": y.to_json(), "name": "stream", "modkwargs": {"random_state": 0}}
    key = call("PUT", url, body)["model-key"]
    for step in range(4):
        wait_finished(url, key)
        answer = call("POST", url, {"x": probe.to_json(), "model-key": key})
        print(f"version {answer['version']}: prediction at (1, 1) = {answer['y']}")
        x, y = batch(rng)
        call("PATCH", url, {"x": x.to_json(), "y": y.to_json(), "model-key": key})
        print(f"PATCH  -> update {step + 1} started")
    wait_finished(url, key)
    final = call("POST", url, {"x": probe.to_json(), "model-key": key})
    print(f"version {final['version']}: prediction at (1, 1) = {final['y']}")
    stop()


if __name__ == "__main__":
    main()
