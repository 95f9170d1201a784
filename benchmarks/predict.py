"""Predict and fit over HTTP against the in-process floor, measured in the same run.

Starts a real server (waitress, SQLite) in a child process, trains a logistic regression on
10 features over HTTP, then sends predicts from this process over loopback. Prints req/s and
p50/p99 per case and the ratio to the floor: the same model's own `predict` on a DataFrame
with no HTTP, no JSON and no database.

    python benchmarks/predict.py [--seconds 3] [--concurrency 1 4]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from sklearn.linear_model import LogisticRegression

SERVER = textwrap.dedent(
    """
    import sys, waitress
    from sklearn.linear_model import LogisticRegression
    from mlserver import Registry, create_app, wrap_estimator
    from mlserver.store import SQLStore
    app = create_app(Registry([wrap_estimator(LogisticRegression, "logistic")]),
                     SQLStore(sys.argv[1]))
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    print(server.effective_port, flush=True)
    server.run()
    """
)


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


def floor(model: LogisticRegression, x: pd.DataFrame, seconds: float) -> list[float]:
    """Latencies of the model's own predict, in process."""
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        model.predict(x)
        samples.append(time.perf_counter() - start)
    return samples


def load(url: str, body: dict, seconds: float, concurrency: int) -> tuple[list[float], int]:
    """Latencies of POSTs from `concurrency` threads, each on a keep-alive session."""
    samples: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        local, bad = [], 0
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = session.post(url, json=body, timeout=30)
                local.append(time.perf_counter() - start)
                bad += response.status_code != 200
        with lock:
            samples.extend(local)
            failures[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(10)]
    x = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=columns)
    y = pd.DataFrame({"label": (x["f0"] + x["f1"] > 0).astype(int)})

    db = Path(tempfile.mkdtemp(prefix="mlserver-bench-")) / "models.db"
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, f"sqlite:///{db}"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{child.stdout.readline().strip()}/logistic"
        started = time.perf_counter()
        key = requests.put(url, json={"x": x.to_json(), "y": y.to_json()}, timeout=60).json()[
            "model-key"
        ]
        while (
            requests.get(url, params={"model-key": key}, timeout=10).json()["status"] == "RUNNING"
        ):
            time.sleep(0.01)
        fit_seconds = time.perf_counter() - started
        model = LogisticRegression().fit(x, y["label"])
        t0 = time.perf_counter()
        LogisticRegression().fit(x, y["label"])
        fit_floor = time.perf_counter() - t0
        print(
            f"fit 10k x 10 over HTTP (PUT .. FINISHED): {fit_seconds * 1000:.0f} ms, "
            f"in-process fit {fit_floor * 1000:.0f} ms, ratio {fit_seconds / fit_floor:.1f}x"
        )

        header = (
            f"{'case':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'floor p50':>11}{'x floor':>9}"
        )
        print(header)
        for rows in (1, 1000):
            batch = x.head(rows)
            body = {"x": batch.to_json(orient="split"), "orient": "split", "model-key": key}
            answer = requests.post(url, json=body, timeout=30).json()
            served = pd.read_json(io.StringIO(answer["y"]), orient="split")["label"].to_numpy()
            assert (served == model.predict(batch)).all(), "served predictions differ"
            base = statistics.median(floor(model, batch, min(args.seconds, 1.0)))
            for concurrency in args.concurrency:
                samples, failures = load(url, body, args.seconds, concurrency)
                assert failures == 0, f"{failures} failed requests"
                p50 = percentile(samples, 50)
                print(
                    f"{f'{rows} row(s), c={concurrency}':<22}{len(samples) / args.seconds:>9.0f}"
                    f"{p50 * 1000:>9.2f}{percentile(samples, 99) * 1000:>9.2f}"
                    f"{base * 1000:>11.3f}{p50 / base:>9.1f}"
                )
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
