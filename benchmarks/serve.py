"""mlserver against a minimal yardstick, the seed's way and the in-process floor, in one run.

Every server is a separate process served by waitress (8 threads); the load comes from
another process over loopback, `concurrency` keep-alive connections on threads. Printed:
req/s, p50 and p99 per case, and ratios, all measured in this run:

- floor: the model's own `predict` on a DataFrame, in process, no HTTP;
- yardstick: falcon + waitress doing orjson.loads -> numpy.asarray -> predict -> orjson.dumps;
- seed way: pandas.read_json + deserialize the model per request + predict on a DataFrame;
- mlserver with the joblib backend (scikit-learn on a DataFrame) and the ONNX backend.

The V2 rows are the same predict through the Open Inference Protocol (joblib backend): JSON
tensors, and Triton's binary tensors both ways. Then a 10k-row predict as Arrow and V2
(JSON and binary) against JSON, for both backends, end to end and in process;
the fit ingest of 1M x 10 rows as JSON and as Arrow (server time until the 202); and the RSS of
a server holding 100 small cached models.

    python benchmarks/serve.py [--seconds 4] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import joblib
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import requests
from sklearn.linear_model import LogisticRegression

THREADS = 8
ARROW = "application/vnd.apache.arrow.stream"

YARDSTICK = textwrap.dedent(
    """
    import logging, sys, falcon, joblib, numpy, orjson, waitress
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as ml-server does
    model = joblib.load(sys.argv[1])

    class Predict:
        def on_post(self, req, resp):
            x = numpy.asarray(orjson.loads(req.bounded_stream.read())["x"], dtype=numpy.float64)
            resp.data = orjson.dumps({"y": model.predict(x)}, option=orjson.OPT_SERIALIZE_NUMPY)
            resp.content_type = "application/json"

    class Transport:  # reads the body, answers `size` bytes: moving a request, no work
        def on_post(self, req, resp):
            req.bounded_stream.read()
            resp.data = bytes(int(req.params["size"]))
            resp.content_type = "application/octet-stream"

    app = falcon.App()
    app.add_route("/predict", Predict())
    app.add_route("/transport", Transport())
    # As ml-server listens: bodies kept in memory, read 256 KiB per recv.
    server = waitress.create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=THREADS,
        inbuf_overflow=1 << 30,
        recv_bytes=256 * 1024,
    )
    print(server.effective_port, flush=True)
    server.run()
    """
).replace("THREADS", str(THREADS))

SEED_WAY = textwrap.dedent(
    """
    import io, logging, sys, warnings, falcon, joblib, orjson, pandas, waitress
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as ml-server does
    warnings.simplefilter("ignore", UserWarning)  # read_json's date inference, once per run
    blob = open(sys.argv[1], "rb").read()  # the seed read the model from its database

    class Predict:
        def on_post(self, req, resp):
            body = orjson.loads(req.bounded_stream.read())
            x = pandas.read_json(io.StringIO(body["x"]), orient=body["orient"])
            model = joblib.load(io.BytesIO(blob))
            y = pandas.DataFrame({"y": model.predict(x)}, index=x.index)
            resp.data = orjson.dumps({"y": y.to_json(orient=body["orient"])})
            resp.content_type = "application/json"

    app = falcon.App()
    app.add_route("/predict", Predict())
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=THREADS)
    print(server.effective_port, flush=True)
    server.run()
    """
).replace("THREADS", str(THREADS))

REGISTRY = textwrap.dedent(
    """
    from sklearn.linear_model import LogisticRegression
    from mlserver import Registry, wrap_estimator

    registry = Registry([
        wrap_estimator(LogisticRegression, "joblib"),
        wrap_estimator(LogisticRegression, "onnx", serializer="onnx"),
    ])
    """
)


# -- load generation (in a separate process) ----------------------------------------------


def _client(url: str, body: bytes, deadline: float, out: list, headers: dict) -> None:
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    latencies, failures = [], 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        connection.request("POST", parsed.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        failures += response.status != 200
    connection.close()
    out.append((latencies, failures))


def _load(url: str, body: bytes, seconds: float, concurrency: int, queue, headers) -> None:
    _client(url, body, time.perf_counter() + 0.3, [], headers)  # warm up
    deadline = time.perf_counter() + seconds
    out: list = []
    threads = [
        threading.Thread(target=_client, args=(url, body, deadline, out, headers))
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(([lat for lats, _ in out for lat in lats], sum(f for _, f in out)))


def load(
    url: str, body: bytes, seconds: float, concurrency: int, headers: dict | None = None
) -> dict:
    """req/s, p50 and p99 (ms) of `concurrency` connections posting `body` for `seconds`."""
    headers = headers or {"Content-Type": "application/json"}
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load, args=(url, body, seconds, concurrency, queue, headers))
    process.start()
    latencies, failures = queue.get()
    process.join()
    assert failures == 0, f"{failures} requests failed against {url}"
    return {
        "rps": len(latencies) / seconds,
        "p50": float(np.percentile(latencies, 50)) * 1e3,
        "p99": float(np.percentile(latencies, 99)) * 1e3,
    }


# -- servers ------------------------------------------------------------------------------


class Server:
    def __init__(self, argv: list[str], env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        line = self.process.stdout.readline().strip()
        assert line, f"{argv[:3]} did not start"
        port = line if line.isdigit() else urlparse(line.split(" on ")[1].split()[0]).port
        self.base = f"http://127.0.0.1:{port}"

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def ml_server(workdir: Path, *options: str) -> Server:
    script = Path(sys.executable).with_name("ml-server")
    return Server(
        [
            str(script),
            "serve",
            f"{workdir / 'bench_registry.py'}:registry",
            "--port",
            "0",
            "--threads",
            str(THREADS),
            "--store",
            f"sqlite:///{workdir / 'models.db'}",
            *options,
        ]
    )


def wait_finished(base: str, model: str, key: str) -> None:
    while (
        requests.get(f"{base}/{model}", params={"model-key": key}, timeout=30).json()["status"]
        == "RUNNING"
    ):
        time.sleep(0.02)


def floor_ms(model, x: pd.DataFrame, seconds: float = 1.0) -> float:
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        model.predict(x)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1e3


def v2_json(frame: pd.DataFrame) -> bytes:
    """A V2 inference request of `frame` as one FP64 tensor, JSON data."""
    tensor = {
        "name": "x",
        "shape": list(frame.shape),
        "datatype": "FP64",
        "data": frame.to_numpy().ravel().tolist(),
    }
    return orjson.dumps({"inputs": [tensor], "outputs": [{"name": "predict"}]})


def v2_binary(frame: pd.DataFrame) -> tuple[bytes, dict]:
    """The same request with Triton's binary tensors both ways (tritonclient's default)."""
    raw = np.ascontiguousarray(frame.to_numpy(), dtype=np.float64).tobytes()
    tensor = {
        "name": "x",
        "shape": list(frame.shape),
        "datatype": "FP64",
        "parameters": {"binary_data_size": len(raw)},
    }
    head = orjson.dumps(
        {"inputs": [tensor], "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}
    )
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return head + raw, headers


def arrow_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per load case")
    parser.add_argument("--quick", action="store_true", help="skip the 1M-row and RSS parts")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 1_000, 10_000])
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mlserver-bench-"))
    (workdir / "bench_registry.py").write_text(REGISTRY)
    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(10)]
    x = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=columns)
    y = pd.DataFrame({"label": (x["f0"] + x["f1"] > 0).astype(int)})
    model = LogisticRegression().fit(x, y["label"])
    joblib.dump(model, workdir / "model.joblib")
    # The yardstick predicts on arrays, so its model is fitted on one (no feature names).
    joblib.dump(LogisticRegression().fit(x.to_numpy(), y["label"]), workdir / "array.joblib")

    yardstick = Server([sys.executable, "-c", YARDSTICK, str(workdir / "array.joblib")])
    seed = Server([sys.executable, "-c", SEED_WAY, str(workdir / "model.joblib")])
    server = ml_server(workdir)
    workers = ml_server(workdir, "--workers", "2")
    try:
        fit = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
        keys = {}
        for backend in ("joblib", "onnx"):
            keys[backend] = requests.put(f"{server.base}/{backend}", json=fit, timeout=120).json()[
                "model-key"
            ]
            wait_finished(server.base, backend, keys[backend])

        check = x.head(1000)
        for backend, key in keys.items():
            answer = requests.post(
                f"{server.base}/{backend}",
                json={"x": check.to_json(orient="split"), "orient": "split", "model-key": key},
                timeout=60,
            ).json()
            served = pd.read_json(io.StringIO(answer["y"]), orient="split")["label"].to_numpy()
            assert (served == model.predict(check)).all(), f"{backend} predictions differ"

        print(f"{'case':<34}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  ratios")
        for rows in args.rows:
            batch = x.head(rows)
            floor = floor_ms(model, batch)
            split = orjson.loads(batch.to_json(orient="split", double_precision=15))
            bodies = {
                "yardstick": (f"{yardstick.base}/predict", {"x": batch.to_numpy().tolist()}),
                "seed way": (
                    f"{seed.base}/predict",
                    {"x": batch.to_json(orient="split"), "orient": "split"},
                ),
                "mlserver joblib": (
                    f"{server.base}/joblib",
                    {"x": split, "orient": "split", "model-key": keys["joblib"]},
                ),
                "mlserver onnx": (
                    f"{server.base}/onnx",
                    {"x": split, "orient": "split", "model-key": keys["onnx"]},
                ),
                # Same store, same key: the two-process server finds the version trained above.
                "mlserver onnx, 2 workers": (
                    f"{workers.base}/onnx",
                    {"x": split, "orient": "split", "model-key": keys["onnx"]},
                ),
            }
            cases = {
                name: (url, json.dumps(body).encode(), None) for name, (url, body) in bodies.items()
            }
            infer = f"{server.base}/v2/models/joblib:{keys['joblib']}/infer"
            cases["mlserver v2 json"] = (infer, v2_json(batch), None)
            cases["mlserver v2 binary"] = (infer, *v2_binary(batch))
            for concurrency in (1, 8):
                results = {
                    name: load(url, body, args.seconds, concurrency, headers)
                    for name, (url, body, headers) in cases.items()
                }
                for name, result in results.items():
                    ratios = (
                        f"x yardstick {result['rps'] / results['yardstick']['rps']:.2f}, "
                        f"x seed {result['rps'] / results['seed way']['rps']:.1f}, "
                        f"p50 x floor {result['p50'] / floor:.1f}"
                    )
                    label = f"{rows} row(s) c={concurrency} {name}"
                    print(
                        f"{label:<34}{result['rps']:>8.0f}{result['p50']:>9.2f}"
                        f"{result['p99']:>9.2f}  {ratios}"
                    )
            print(f"{rows} row(s): in-process floor p50 {floor:.3f} ms")

        bulk(workdir, server.base, yardstick.base, keys, x)
    finally:
        for process in (yardstick, seed, server, workers):
            process.stop()
    if args.quick:
        return

    ingest(workdir, rng)
    rss(workdir)


def bulk(workdir: Path, base: str, yardstick: str, keys: dict[str, str], x: pd.DataFrame) -> None:
    """Arrow against JSON for the same 10k rows, answered in kind: end to end over one
    keep-alive connection, and in process (the same app called as WSGI, no sockets).

    End to end also shows the transport floor: the same bodies, and answers of the same
    sizes, through a falcon + waitress route that does nothing else.
    """
    from falcon.testing import create_environ

    from mlserver import create_app
    from mlserver.store import SQLStore

    sys.path.insert(0, str(workdir))
    from bench_registry import registry  # the registry the server serves

    app = create_app(registry, SQLStore(f"sqlite:///{workdir / 'models.db'}"))
    split = orjson.loads(x.to_json(orient="split", double_precision=15))
    connections = {
        url: http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=60)
        for url in (base, yardstick)
    }

    def over_http(url: str, path: str, body: bytes, media: str, extra: dict | None = None) -> int:
        connection = connections[url]
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": media, "Accept": media, **(extra or {})},
        )
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, answer
        return len(answer)

    def in_process(path: str, body: bytes, media: str, extra: dict | None = None) -> None:
        route, _, query = path.partition("?")
        headers = {"Content-Type": media, "Accept": media, **(extra or {})}
        environ = create_environ(route, query, method="POST", body=body, headers=headers)
        status = []
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status

    def medians_ms(call, cases: dict[str, tuple]) -> dict[str, float]:
        """Median ms per case, the cases taken in turn so that both see the same machine."""
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(43):
            for name, args in cases.items():
                start = time.perf_counter()
                call(*args)
                if round_ >= 3:  # the first rounds warm up
                    samples[name].append(time.perf_counter() - start)
        return {name: float(np.median(taken)) * 1e3 for name, taken in samples.items()}

    try:
        for backend, key in keys.items():
            cases = {
                "JSON": (
                    f"/{backend}",
                    orjson.dumps({"x": split, "orient": "split", "model-key": key}),
                    "application/json",
                ),
                "Arrow": (f"/{backend}?model-key={key}", arrow_bytes(x), ARROW),
                "V2 JSON": (f"/v2/models/{backend}:{key}/infer", v2_json(x), "application/json"),
            }
            binary, headers = v2_binary(x)
            cases["V2 binary"] = (
                f"/v2/models/{backend}:{key}/infer",
                binary,
                "application/octet-stream",
                {"Inference-Header-Content-Length": headers["Inference-Header-Content-Length"]},
            )
            served = medians_ms(over_http, {n: (base, *case) for n, case in cases.items()})
            floor = medians_ms(
                over_http,
                {
                    name: (yardstick, f"/transport?size={over_http(base, *case)}", *case[1:3])
                    for name, case in cases.items()
                },
            )
            inside = medians_ms(in_process, cases)
            for where, times in (("end to end", served), ("in process", inside)):
                shown = ", ".join(f"{name} {ms:.2f} ms" for name, ms in times.items())
                print(
                    f"10k-row predict, {backend}, {where}: {shown}; x JSON: "
                    + ", ".join(
                        f"{name} {times['JSON'] / ms:.1f}"
                        for name, ms in times.items()
                        if name != "JSON"
                    )
                )
            print(
                f"10k-row predict, {backend}, transport floor: "
                + ", ".join(f"{name} {ms:.2f} ms" for name, ms in floor.items())
            )
    finally:
        for connection in connections.values():
            connection.close()
        app.close()


def ingest(workdir: Path, rng: np.random.Generator) -> None:
    """Server time from request to 202 for a 1M x 10 fit, as JSON and as Arrow."""
    server = ml_server(workdir, "--max-body-bytes", str(1 << 30))
    try:
        big = pd.DataFrame(rng.normal(size=(1_000_000, 10)), columns=[f"f{i}" for i in range(10)])
        big["label"] = (big["f0"] > 0).astype(int)
        bodies = {
            "json": (
                json.dumps(
                    {
                        "x": big.drop(columns="label").to_json(orient="split"),
                        "y": big[["label"]].to_json(orient="split"),
                        "orient": "split",
                        "name": "json",
                    }
                ).encode(),
                "application/json",
                f"{server.base}/joblib",
            ),
            "arrow": (
                arrow_bytes(big),
                "application/vnd.apache.arrow.stream",
                f"{server.base}/joblib?target=label&name=arrow",
            ),
        }
        for name, (body, media, url) in bodies.items():
            start = time.perf_counter()
            response = requests.put(url, data=body, headers={"Content-Type": media}, timeout=600)
            elapsed = time.perf_counter() - start
            assert response.status_code == 202, response.text
            print(f"fit ingest 1M x 10 as {name}: {len(body) / 1e6:.0f} MB, {elapsed:.2f} s to 202")
            wait_finished(server.base, "joblib", response.json()["model-key"])
    finally:
        server.stop()


def rss(workdir: Path) -> None:
    """RSS of a server process after loading 100 small models into its cache."""
    server = ml_server(workdir, "--model-cache-size", "128")
    try:
        rng = np.random.default_rng(1)
        x = pd.DataFrame(rng.normal(size=(200, 10)), columns=[f"f{i}" for i in range(10)])
        y = pd.DataFrame({"label": (x["f0"] > 0).astype(int)})
        base_rss = server.rss_mb()
        for i in range(100):
            body = {
                "x": x.to_json(orient="split"),
                "y": y.to_json(orient="split"),
                "orient": "split",
                "name": f"m{i}",
            }
            key = requests.put(f"{server.base}/joblib", json=body, timeout=60).json()["model-key"]
            wait_finished(server.base, "joblib", key)
            answer = requests.post(
                f"{server.base}/joblib",
                json={"x": x.head(1).to_json(orient="split"), "orient": "split", "model-key": key},
                timeout=60,
            )
            assert answer.status_code == 200
        print(f"RSS: {base_rss:.0f} MB at start, {server.rss_mb():.0f} MB with 100 cached models")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
