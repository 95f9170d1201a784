"""Large tables as Arrow: train on 500,000 rows and score 10,000 at a time, no JSON involved.

The training set goes as one Arrow IPC stream body, its target column named by `?target=`;
the rows to score go the same way, and `Accept` asks for the predictions as Arrow too. The
ONNX backend serves the model. For comparison the same 10,000 rows are also sent as JSON.

Run it with `python examples/bulk_arrow.py` (needs pyarrow: `pip install 'ml-server[arrow]'`
for the server side; the script itself reads and writes Arrow too). It starts its own server
on a free port with a temporary SQLite database and stops it at the end.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import requests
from _http import serve_in_background
from sklearn.linear_model import LogisticRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore

ARROW = "application/vnd.apache.arrow.stream"


def to_arrow(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_arrow(body: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all().to_pandas()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlserver-", ignore_cleanup_errors=True) as workdir:
        registry = Registry([wrap_estimator(LogisticRegression, "scorer", serializer="onnx")])
        app = create_app(
            registry, SQLStore(f"sqlite:///{workdir}/models.db"), max_body_bytes=256 << 20
        )
        base, stop = serve_in_background(app)
        try:
            run(f"{base}/scorer")
        finally:
            stop()


def run(url: str) -> None:
    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(10)]
    train = pd.DataFrame(rng.normal(size=(500_000, 10)), columns=columns)
    train["label"] = train["f0"] - 0.5 * train["f1"] + rng.normal(scale=0.3, size=len(train)) > 0
    train["label"] = train["label"].astype(int)

    body = to_arrow(train)
    started = time.perf_counter()
    answer = requests.put(
        url,
        data=body,
        params={"target": "label", "name": "synthetic"},
        headers={"Content-Type": ARROW},
        timeout=60,
    )
    answer.raise_for_status()
    key = answer.json()["model-key"]
    print(
        f"PUT  {len(train)} rows as Arrow ({len(body) >> 20} MiB) -> {answer.status_code} in "
        f"{(time.perf_counter() - started) * 1e3:.0f} ms, model-key {key}"
    )
    while (status := requests.get(url, params={"model-key": key}, timeout=30).json())[
        "status"
    ] == "RUNNING":
        time.sleep(0.1)
    if status["status"] != "FINISHED":
        raise SystemExit(f"training failed: {status['error']}")
    print(f"GET  {status['status']} version {status['version']}")

    batch = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=columns)
    session = requests.Session()

    def arrow_predict() -> pd.DataFrame:
        answer = session.post(
            url,
            data=to_arrow(batch),
            params={"model-key": key},
            headers={"Content-Type": ARROW, "Accept": ARROW},
            timeout=30,
        )
        answer.raise_for_status()
        return from_arrow(answer.content)

    def json_predict() -> None:
        body = {"x": batch.to_dict(orient="split"), "orient": "split", "model-key": key}
        session.post(url, json=body, timeout=30).raise_for_status()

    served = arrow_predict()["label"].to_numpy()
    # The server trained the same estimator on the same rows; ONNX computes in float32.
    expected = LogisticRegression().fit(train[columns], train["label"]).predict(batch)
    agreement = float(np.mean(served == expected))
    print(f"POST {len(served)} predictions as Arrow, agreement with scikit-learn {agreement:.4f}")

    timings = {}
    for name, call in (("Arrow", arrow_predict), ("JSON", json_predict)):
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        timings[name] = statistics.median(samples) * 1e3
    print(
        f"10,000 rows per request: Arrow {timings['Arrow']:.1f} ms, "
        f"JSON {timings['JSON']:.1f} ms (encoding in the client included)"
    )


if __name__ == "__main__":
    main()
