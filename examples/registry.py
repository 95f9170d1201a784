"""Versions, aliases and promotion: keep what serves, try candidates, roll back.

A key's first fit serves. A refit with promote="if-better" serves only if its held-out score
is at least as good; one with promote="never" is a candidate until `served` is moved to it.
Moving `served` back rolls back, at once, without training anything.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
from _http import serve_in_background
from sklearn.linear_model import LogisticRegression

from mlserver import ModelWrapper, Registry, create_app, wrap_estimator
from mlserver.client import ModelClient
from mlserver.store import SQLStore


class SlowLogistic(ModelWrapper):
    """A logistic regression whose fit takes a while: a job to cancel."""

    name = "slow-logistic"

    def make_model(self, **modkwargs: Any) -> LogisticRegression:
        return LogisticRegression(**modkwargs)

    def fit(self, model: Any, x: Any, y: Any = None, **algkwargs: Any) -> Any:
        time.sleep(1.0)
        return model.fit(x, y, **algkwargs)


def churn(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["tenure", "spend", "calls"])
    y = pd.Series((x["calls"] - x["tenure"] > 0).astype(int), name="churned")
    return x, y


def main() -> None:
    registry = Registry([wrap_estimator(LogisticRegression, "churn"), SlowLogistic])
    store = SQLStore(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-registry-')}/models.db")
    base, stop = serve_in_background(create_app(registry, store))
    x, y = churn(400, seed=0)
    x_new, _ = churn(5, seed=1)

    with ModelClient(base, "churn") as client:
        # The first version of a key always serves; hold out a quarter of the rows to score it.
        key = client.fit(x, y, name="weekly", validation=0.25, scoring="accuracy")
        # Labels shuffled by mistake: scored worse, so it is kept but does not serve.
        shuffled = y.sample(frac=1.0, random_state=0).set_axis(y.index)
        client.fit(
            x, shuffled, name="weekly", retrain=True, validation=0.25, promote="if-better",
            scoring="accuracy",
        )  # fmt: skip
        # A candidate: trained and stored, served only when asked for by version.
        client.fit(x, y, name="weekly", retrain=True, modkwargs={"C": 0.1}, promote="never")
        candidate = client.predict(x_new, key, version=3)
        print(f"candidate: version {candidate.attrs['version']}, {candidate.tolist()}")

        for v in client.versions(key):
            score = (v["metrics"].get("validation") or {}).get("score")
            shown = "-" if score is None else f"{score:.3f}"
            print(f"version {v['version']} {v['status']} {v['aliases']} {shown}: "
                  f"{v['metrics']['reason']}")  # fmt: skip

        client.set_alias(key, "served", 3)  # promote the candidate
        print(f"served after promoting: version {client.predict(x_new, key).attrs['version']}")
        client.set_alias(key, "served", 1)  # and roll back
        print(f"served after rolling back: version {client.predict(x_new, key).attrs['version']}")
        print(f"aliases: {client.aliases(key)}")

    with ModelClient(base, "slow-logistic") as slow:
        running = slow.fit(x, y, wait=False)
        answer = slow.cancel(running)
        print(f"cancelled version {answer['version']}: {slow.status(running)['error']}")

    stop()
    store.close()


if __name__ == "__main__":
    main()
