"""Serializers compared: artifact size, load time and predict latency, against scikit-learn.

For each estimator, fits once, then for joblib, skops and ONNX measures the bytes stored, the
time to load them (what a cache miss costs) and the median latency of predicting 1 and 1,000
rows with the loaded model, as a ratio to scikit-learn's own predict on the same DataFrame
(the in-process floor, measured in the same run).

    python benchmarks/serializers.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlserver.frames.schema import Schema
from mlserver.serializers import JoblibSerializer, OnnxSerializer, SkopsSerializer

TRUSTED = (
    "sklearn.tree._tree.Tree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
)


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5000, 10)), columns=[f"f{i}" for i in range(10)])
    y = (x["f0"] + x["f1"] > 0).astype(int)
    estimators = {
        "logistic-regression": LogisticRegression(),
        "scaled-logistic": make_pipeline(StandardScaler(), LogisticRegression()),
        "random-forest-100": RandomForestClassifier(100, random_state=0),
        "mlp-classifier": MLPClassifier((32,), max_iter=200, random_state=0),
    }
    serializers = {
        "joblib": JoblibSerializer(),
        "skops": SkopsSerializer(trusted=TRUSTED),
        "onnx": OnnxSerializer(),
    }
    print(
        f"{'estimator':<20}{'serializer':<10}{'bytes':>10}{'load ms':>9}"
        f"{'1 row ms':>10}{'x floor':>9}{'1k rows ms':>12}{'x floor':>9}"
    )
    for name, model in estimators.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y)
        one, batch = x.head(1), x.head(1000)
        floor_one = median_seconds(lambda m=model, r=one: m.predict(r), args.repeat)
        floor_batch = median_seconds(lambda m=model, r=batch: m.predict(r), args.repeat // 4)
        print(
            f"{name:<20}{'sklearn':<10}{'':>10}{'':>9}"
            f"{floor_one * 1e3:>10.3f}{1:>9.1f}{floor_batch * 1e3:>12.3f}{1:>9.1f}"
        )
        for label, serializer in serializers.items():
            blob = serializer.dumps(model, Schema.of(x))
            load = median_seconds(
                lambda s=serializer, b=blob: s.loads(b), max(args.repeat // 20, 3)
            )
            served = serializer.loads(blob)
            assert (served.predict(batch) == model.predict(batch)).all(), f"{label} differs"
            one_s = median_seconds(lambda s=served, r=one: s.predict(r), args.repeat)
            batch_s = median_seconds(lambda s=served, r=batch: s.predict(r), args.repeat // 4)
            print(
                f"{'':<20}{label:<10}{len(blob):>10}{load * 1e3:>9.2f}"
                f"{one_s * 1e3:>10.3f}{one_s / floor_one:>9.2f}"
                f"{batch_s * 1e3:>12.3f}{batch_s / floor_batch:>9.2f}"
            )


if __name__ == "__main__":
    main()
