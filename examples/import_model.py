"""Bring a model trained elsewhere: store it as a version, serve it, export it back.

A classifier fitted in a notebook is exported to ONNX with skl2onnx and saved with skops.
Both files go to a running server over HTTP: they cannot run code when they load, so the
server takes them by default (a pickle would need --allow-pickle-import). Before anything is
stored, the server checks that each loads, knows its input columns and predicts. The
imported versions answer as the estimator does, and their bytes come back exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io
from _http import serve_in_background
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from mlserver import create_app
from mlserver.catalog import catalog
from mlserver.client import BadRequest, ModelClient, UnsupportedMedia
from mlserver.store import SQLStore


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mlserver-import-"))
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 3)), columns=["tenure", "visits", "spend"])
    y = pd.Series(np.where(x["visits"] + 0.5 * x["spend"] > 0, "stays", "leaves"))
    model = LogisticRegression().fit(x, y)  # "elsewhere": any notebook or pipeline
    skops.io.dump(model, work / "churn.skops")
    graph = to_onnx(model, x.to_numpy()[:1].astype(np.float32))
    (work / "churn.onnx").write_bytes(graph.SerializeToString())

    store = SQLStore(f"sqlite:///{work / 'models.db'}")
    base, stop = serve_in_background(create_app(catalog(), store))
    with ModelClient(base, "imported") as client:
        skops_version = client.import_model(work / "churn.skops", name="churn")
        key = skops_version["model-key"]
        print(f"imported {skops_version['serializer']}: version {skops_version['version']}, "
              f"lineage {skops_version['lineage']['kind']}, "
              f"scikit-learn {skops_version['metadata']['libraries']['scikit-learn']}")  # fmt: skip
        served = client.predict(x, key)
        print(f"skops answers as the estimator: {served.tolist() == model.predict(x).tolist()}")

        onnx_version = client.import_model(work / "churn.onnx", name="churn-onnx")
        rows = pd.DataFrame(x.to_numpy())  # the graph takes its 3 columns by position
        labels = client.predict(rows, onnx_version["model-key"])
        proba = client.predict(rows, onnx_version["model-key"], method="predict_proba")
        same = labels.tolist() == model.predict(x).tolist()
        gap = np.abs(proba.to_numpy() - model.predict_proba(x)).max()
        print(f"onnx labels as the estimator: {same}; probabilities within {gap:.0e}")

        exported = client.export(key)
        print(f"exported version {exported.version}: the same bytes: "
              f"{exported.data == (work / 'churn.skops').read_bytes()}")  # fmt: skip

        try:
            client.import_model(b"\x08 not a model", serializer="onnx")
        except BadRequest as refused:
            stored = len(client.keys())
            print(f"junk refused: {refused.status_code}; keys stored: {stored}")
        try:
            client.import_model(b"\x80\x05 a pickle", serializer="pickle")
        except UnsupportedMedia as refused:
            print(f"pickle refused over HTTP: {refused.status_code}")
    stop()
    store.close()


if __name__ == "__main__":
    main()
