"""Two replicas on one store and a local Dask cluster: train through one, serve from the other.

Starts a Dask scheduler with two workers, then two `ml-server serve` processes sharing one
store (MLSERVER_EXAMPLE_STORE, or a SQLite file in a temporary directory; point it at
PostgreSQL to run it as deployed) and training on the cluster. A model is trained through
replica A, served by replica B, retrained through B and served by A.

    python examples/replicas.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import LocalCluster

from mlserver.client import ModelClient


def start_replica(name: str, store: str, scheduler: str) -> tuple[subprocess.Popen, str]:
    """`ml-server serve` on a free port, training on the Dask cluster; returns its URL."""
    script = Path(sys.executable).with_name("ml-server")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlserver.cli"]
    process = subprocess.Popen(
        [
            *command,
            "serve",
            "--port",
            "0",
            "--store",
            store,
            "--executor",
            "dask",
            "--scheduler",
            scheduler,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    url = line.split(" on ")[1].split()[0]
    print(f"replica {name}: {url}")
    return process, url


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlserver-replicas-"))
    store = os.environ.get("MLSERVER_EXAMPLE_STORE", f"sqlite:///{workdir / 'models.db'}")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    y = pd.Series((x["a"] - x["c"] > 0).astype(int), name="label")

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        print(f"dask scheduler: {cluster.scheduler_address}, 2 workers")
        replicas = [start_replica(n, store, cluster.scheduler_address) for n in ("A", "B")]
        (_, url_a), (_, url_b) = replicas
        try:
            with (
                ModelClient(url_a, "logistic-regression") as a,
                ModelClient(url_b, "logistic-regression") as b,
            ):
                started = time.perf_counter()
                key = a.fit(x, y, name="churn")
                seconds = time.perf_counter() - started
                print(f"trained through A on the cluster: {key} ({seconds:.2f} s)")
                served = b.predict(x, key)
                accuracy = float((served.to_numpy() == y.to_numpy()).mean())
                print(f"served by B: version {served.attrs['version']}, accuracy {accuracy:.3f}")
                b.fit(x, y, name="churn", retrain=True)
                print(f"retrained through B: version {a.status(key)['version']}")
                time.sleep(1.1)  # other replicas see a new version within freshness_seconds
                print(f"served by A: version {a.predict(x.head(5), key).attrs['version']}")
        finally:
            for process, _ in replicas:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
                process.stdout.close()


if __name__ == "__main__":
    main()
