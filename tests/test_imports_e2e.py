"""Imports end to end: `ml-server serve` (the catalog) behind waitress on each backend, the
Python client importing and exporting, `ml-server import` writing to the store a server
reads, pickles only with --allow-pickle-import, and a 2 GB upload refused as it arrives."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import socket
import subprocess
import time
from urllib.parse import urlsplit

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from mlserver.client import ModelClient, UnsupportedMedia
from support import ML_SERVER, ServerProcess, classification, regression, server_environment

pytestmark = pytest.mark.slow

CATALOG = "mlserver.catalog:catalog"


def test_the_client_imports_onnx_and_exports_it_and_the_cli_imports_joblib(store_url, tmp_path):
    x, y = classification()
    model = LogisticRegression(max_iter=500).fit(x.to_numpy(), y)
    graph = to_onnx(model, x.to_numpy()[:1].astype(np.float32)).SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(graph)
    server = ServerProcess(store_url, target=CATALOG)
    try:
        with ModelClient(server.url, "imported") as client:
            v = client.import_model(path)
            assert (v["serializer"], v["lineage"]["kind"]) == ("onnx", "import")
            key = v["model-key"]
            positional = pd.DataFrame(x.to_numpy())  # the graph's columns: 0..k-1
            labels = client.predict(positional, key)
            np.testing.assert_array_equal(labels.to_numpy(), model.predict(x.to_numpy()))
            exported = client.export(key)
            assert exported.data == graph
            assert exported.sha256 == hashlib.sha256(graph).hexdigest()
            assert (exported.serializer, exported.version) == ("onnx", 1)
            buffer = io.BytesIO()
            joblib.dump(model, buffer)
            with pytest.raises(UnsupportedMedia, match="--allow-pickle-import"):
                client.import_model(buffer.getvalue(), serializer="joblib")

        # the CLI writes to the store the server reads; the server serves it at once
        rx, ry = regression()
        ridge = Ridge().fit(rx, ry)
        joblib.dump(ridge, tmp_path / "ridge.joblib")
        done = subprocess.run(
            [*ML_SERVER, "import", "ridge", str(tmp_path / "ridge.joblib"), "--store", store_url],
            capture_output=True,
            text=True,
            timeout=120,
            env=server_environment(),
        )
        assert done.returncode == 0, done.stderr
        stored = json.loads(done.stdout.splitlines()[-1])
        assert "imported ridge" in done.stderr
        with ModelClient(server.url, "ridge") as client:
            got = client.predict(rx, stored["model-key"])
        np.testing.assert_array_equal(got.to_numpy(), ridge.predict(rx))
    finally:
        server.stop()


def test_a_server_started_with_allow_pickle_import_takes_pickles_above_the_body_limit(
    sqlite_url,
):
    x, y = regression()
    forest = RandomForestRegressor(n_estimators=20, random_state=0).fit(x, y)
    blob = pickle.dumps(forest)
    limit = 20_000
    assert len(blob) > limit  # an artifact larger than any other body may be
    server = ServerProcess(
        sqlite_url, "--allow-pickle-import", "--max-body-bytes", str(limit), target=CATALOG
    )
    try:
        with ModelClient(server.url, "random-forest-regressor") as client:
            v = client.import_model(blob, serializer="pickle", name="p")
            assert v["serializer"] == "pickle"
            got = client.predict(x, v["model-key"])
            np.testing.assert_array_equal(got.to_numpy(), forest.predict(x))
        # other bodies keep their limit, refused by waitress as they arrive
        refused = requests.post(
            f"{server.url}/random-forest-regressor", data=b"{" + b" " * limit + b"}", timeout=30
        )
        assert refused.status_code == 413
        assert "max_body_bytes" in refused.json()["description"]
    finally:
        server.stop()


def test_a_2_gb_upload_is_refused_as_it_arrives(sqlite_url):
    server = ServerProcess(sqlite_url, target=CATALOG)
    try:
        where = urlsplit(server.url)
        with socket.create_connection((where.hostname, where.port), timeout=30) as connection:
            head = (
                "PUT /imported/import HTTP/1.1\r\n"
                f"Host: {where.netloc}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {2 * 1024**3}\r\n\r\n"
            )
            # NOTE: only the headers: the refusal must come before any body, and body bytes
            # the server never reads would turn its close into a reset.
            connection.sendall(head.encode())
            started = time.monotonic()
            answer = b""
            while chunk := connection.recv(65536):  # it closes the connection after its refusal
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"max_import_bytes" in answer
            assert time.monotonic() - started < 10  # not after 2 GB arrived
    finally:
        server.stop()
