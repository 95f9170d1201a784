"""Lineage: the server keeps what every version learnt from, and can train it again.

An online model is fitted, then updated twice. Each version records its data (stored once
per distinct content) and the version it grew from. The rows of any version can be read
back, and a refit replays the whole history (fit, update, update) with the libraries the
server runs now: after a scikit-learn upgrade, that is how a key gets a model of the new
release that answers as the old one did.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd
from _http import serve_in_background
from sklearn.linear_model import SGDRegressor

from mlserver import Registry, create_app, wrap_estimator
from mlserver.client import ModelClient
from mlserver.store import SQLStore


def demand(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["price", "season", "promo"])
    y = pd.Series(3 * x["promo"] - 2 * x["price"] + rng.normal(0, 0.1, rows), name="units")
    return x, y


def finished(client: ModelClient, key: str, number: int) -> dict:
    while (version := client.version(key, number))["status"] == "RUNNING":
        time.sleep(0.05)
    return version


def main() -> None:
    registry = Registry([wrap_estimator(SGDRegressor, "demand", update="partial_fit")])
    store = SQLStore(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-lineage-')}/models.db")
    base, stop = serve_in_background(create_app(registry, store))
    weeks = [demand(200, seed) for seed in range(3)]
    x_new, _ = demand(5, seed=9)

    with ModelClient(base, "demand") as client:
        key = client.fit(*weeks[0], name="weekly", modkwargs={"random_state": 0})
        client.update(*weeks[1], key)
        client.update(*weeks[2], key)
        for v in client.versions(key):
            lineage = v["lineage"]
            print(f"version {v['version']}: {lineage['kind']} of {lineage['rows']} rows, "
                  f"parent {lineage['parent']}, data {lineage['data'][:12]}")  # fmt: skip

        x_back, y_back = client.data(key, 2)
        same = x_back.equals(weeks[1][0]) and y_back.equals(weeks[1][1])
        print(f"version 2 learnt from {len(x_back)} rows, the ones sent: {same}")

        refit = client.refit(key)  # from the served version, version 3
        fourth = finished(client, key, refit["version"])
        print(f"refit: version {fourth['version']} {fourth['status']}, "
              f"{fourth['lineage']['kind']} of version {fourth['lineage']['source']}")  # fmt: skip
        before = client.predict(x_new, key, version=3).to_numpy()
        after = client.predict(x_new, key).to_numpy()
        print(f"refit answers as the history did: {bool(np.array_equal(before, after))}")
    stop()
    store.close()


if __name__ == "__main__":
    main()
