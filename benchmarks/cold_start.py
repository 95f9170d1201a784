"""Cold start: from starting the process to its first answered predict, for `ml-server serve`
(a registry of one model, and the built-in catalog) and for the minimal falcon app, which
imports falcon, numpy and scikit-learn and loads one joblib file. Medians of several starts
in one run, and the ratios.

    python benchmarks/cold_start.py [--starts 5]

mlserver's modules are byte-compiled first, as installing a wheel does: an editable install
under PYTHONDONTWRITEBYTECODE would otherwise compile every module on every start (~0.15 s),
which a deployed server never does (the site-packages the minimal app imports are compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

MINIMAL = """
import sys, json, falcon, joblib, numpy, waitress
model = joblib.load(sys.argv[1])
class Predict:
    def on_post(self, req, resp):
        x = numpy.asarray(json.loads(req.bounded_stream.read())["x"], dtype=numpy.float64)
        resp.media = {"y": model.predict(x).tolist()}
app = falcon.App()
app.add_route("/predict", Predict())
server = waitress.create_server(app, host="127.0.0.1", port=0)
print(server.effective_port, flush=True)
server.run()
"""

REGISTRY = """
from sklearn.linear_model import LogisticRegression
from mlserver import Registry, wrap_estimator

registry = Registry([wrap_estimator(LogisticRegression, "logistic-regression")])
"""


def first_answer(argv: list[str], path: str, body: dict, env: dict) -> float:
    """Seconds from starting `argv` to its first 200 for `body` POSTed to `path`."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline().strip()
        port = line if line.isdigit() else line.split(" on http://")[1].split()[0].split(":")[1]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
            answer.read()
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    import compileall

    import mlserver

    compileall.compile_dir(Path(mlserver.__file__).parent, quiet=1)
    workdir = Path(tempfile.mkdtemp(prefix="mlserver-cold-"))
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    y = pd.Series((x["a"] > 0).astype(int), name="label")
    joblib.dump(LogisticRegression().fit(x.to_numpy(), y), workdir / "model.joblib")
    (workdir / "cold_registry.py").write_text(REGISTRY)
    store = f"sqlite:///{workdir / 'models.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    env["MLSERVER_LOG_LEVEL"] = "error"

    # One trained version in the store, which both ml-server cases serve.
    from mlserver import create_app
    from mlserver.catalog import catalog
    from mlserver.store import SQLStore

    app = create_app(catalog(), SQLStore(store))
    from falcon import testing

    client = testing.TestClient(app)
    fit = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
    key = client.simulate_put("/logistic-regression", json=fit).json["model-key"]
    while (
        client.simulate_get("/logistic-regression", params={"model-key": key}).json["status"]
        == "RUNNING"
    ):
        time.sleep(0.02)
    app.close()

    row = {"x": {"columns": list(x.columns), "data": [x.iloc[0].tolist()]}, "orient": "split"}
    server = str(Path(sys.executable).with_name("ml-server"))
    options = ["--port", "0", "--store", store]
    cases = {
        "minimal falcon app": (
            [sys.executable, "-c", MINIMAL, str(workdir / "model.joblib")],
            "/predict",
            {"x": [x.iloc[0].tolist()]},
        ),
        "ml-server serve TARGET": (
            [server, "serve", str(workdir / "cold_registry.py") + ":registry", *options],
            "/logistic-regression",
            {**row, "model-key": key},
        ),
        "ml-server serve (catalog)": (
            [server, "serve", *options],
            "/logistic-regression",
            {**row, "model-key": key},
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.starts):
        for name, (argv, path, body) in cases.items():  # in turn: the same machine for each
            times[name].append(first_answer(argv, path, body, env))
    floor = statistics.median(times["minimal falcon app"])
    for name, taken in times.items():
        median = statistics.median(taken)
        print(
            f"{name:<28} first predict after {median:.2f} s (median of {len(taken)}; "
            f"{min(taken):.2f}-{max(taken):.2f}), x minimal app {median / floor:.2f}"
        )


if __name__ == "__main__":
    main()
