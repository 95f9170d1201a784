"""ml-server serve --workers N: several processes, each with its own app, behind one port."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from support import regression, wait_until

# It starts `ml-server serve --workers 2` (gunicorn worker processes).
pytestmark = pytest.mark.slow

REGISTRY = """
from sklearn.linear_model import LinearRegression
from mlserver import Registry, wrap_estimator
registry = Registry([wrap_estimator(LinearRegression, "linear-regression", serializer="onnx")])
"""


def test_two_worker_processes_serve_one_store(tmp_path):
    """With --workers 2, two app processes train and serve on one port and end cleanly."""
    (tmp_path / "models.py").write_text(REGISTRY)
    script = Path(sys.executable).with_name("ml-server")
    target = f"{tmp_path / 'models.py'}:registry"
    store = f"sqlite:///{tmp_path / 'models.db'}"
    process = subprocess.Popen(
        [str(script), "serve", target, "--workers", "2", "--port", "0", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "with 2 workers" in line, line
        url = line.split(" on ")[1].split()[0]
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        wait_until(lambda: len(children.read_text().split()) == 2)
        x, y = regression()
        body = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
        key = requests.put(f"{url}/linear-regression", json=body, timeout=30).json()["model-key"]
        wait_until(
            lambda: (
                requests.get(
                    f"{url}/linear-regression", params={"model-key": key}, timeout=30
                ).json()["status"]
                == "FINISHED"
            )
        )
        answers = [
            requests.post(
                f"{url}/linear-regression",
                json={"x": x.to_json(orient="split"), "orient": "split", "model-key": key},
                timeout=30,
            )
            for _ in range(20)
        ]
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["y"] for a in answers}) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stdout.read()
        errors = process.stderr.read()
        assert "SIGABRT" not in errors and "SIGSEGV" not in errors, errors
        process.stdout.close()
        process.stderr.close()
