"""ml-server serve --workers N: several processes, each with its own app, behind one port."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from support import predict, regression, serve_command, server_environment, train, wait_until

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
    target = f"{tmp_path / 'models.py'}:registry"
    store = f"sqlite:///{tmp_path / 'models.db'}"
    # Its own Popen, not ServerProcess: the start-up line must say "with 2 workers", and
    # ServerProcess keeps only the URL it reads from that line.
    process = subprocess.Popen(
        serve_command(store, "--workers", "2", target=target),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_environment(),
    )
    try:
        line = process.stdout.readline()
        assert "with 2 workers" in line, line
        url = line.split(" on ")[1].split()[0]
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        wait_until(lambda: len(children.read_text().split()) == 2)
        x, y = regression()
        key, state = train(url, "linear-regression", x, y)
        assert state["status"] == "FINISHED", state
        answers = [predict(url, "linear-regression", key, x) for _ in range(20)]
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
