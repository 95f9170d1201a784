"""The Open Inference Protocol (V2): a model trained over mlserver's own API, served to a
Triton client unmodified.

A pipeline with a text column is trained with `ModelClient`. Triton's `tritonclient[http]`
then asks for its metadata and predicts with it: first one tensor per column (the pandas
codec: the text column as BYTES), with binary tensors both ways as tritonclient does by
default, then pinned to a version and to an alias after a candidate was trained. The
answers equal the pipeline's own.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import tritonclient.http as triton
from _http import serve_in_background
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlserver import ModelWrapper, Registry, create_app
from mlserver.client import ModelClient
from mlserver.store import SQLStore


class Churn(ModelWrapper):
    """Plan (text) and usage (a number) -> churns or not."""

    name = "churn"

    def make_model(self, **modkwargs):
        plans = make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough")
        return make_pipeline(plans, LogisticRegression(**modkwargs))


def customers(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {"plan": rng.choice(["basic", "plus", "pro"], rows), "usage": rng.normal(size=rows)}
    )
    return x, pd.Series((x["plan"] == "basic") & (x["usage"] < 0.3), name="churns")


def tensors(x: pd.DataFrame) -> list[triton.InferInput]:
    """One [rows, 1] tensor per column, named after it: BYTES for text, FP64 for numbers."""
    found = []
    for column in x.columns:
        values = x[[column]].to_numpy()
        datatype = "BYTES" if values.dtype == object else "FP64"
        given = triton.InferInput(column, list(values.shape), datatype)
        given.set_data_from_numpy(values.astype(object) if datatype == "BYTES" else values)
        found.append(given)
    return found


def main() -> None:
    store = SQLStore(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-v2-')}/models.db")
    base, stop = serve_in_background(create_app(Registry([Churn()]), store))
    x, y = customers(300, seed=0)
    with ModelClient(base, "churn") as client:
        key = client.fit(x, y, name="churn")
        name = f"churn:{key}"

        server = triton.InferenceServerClient(base.removeprefix("http://"))
        meta = server.get_model_metadata(name)
        print("inputs:", ", ".join(f"{i['name']} {i['datatype']}" for i in meta["inputs"]))
        print("outputs:", ", ".join(o["name"] for o in meta["outputs"]))

        new, _ = customers(8, seed=1)
        wanted = [
            triton.InferRequestedOutput("predict"),
            triton.InferRequestedOutput("predict_proba"),
        ]
        answer = server.infer(name, tensors(new), outputs=wanted, parameters={"content_type": "pd"})
        model = Churn().make_model().fit(x, y)
        same = (answer.as_numpy("predict") == model.predict(new)).all()
        gap = np.abs(answer.as_numpy("predict_proba") - model.predict_proba(new)).max()
        version = answer.get_response()["model_version"]
        print(f"version {version}: labels as the pipeline's: {same}, "
              f"probabilities within {gap:.0e}")  # fmt: skip

        x2, y2 = customers(300, seed=2)
        client.fit(x2, y2, name="churn", retrain=True, promote="never")  # a candidate
        client.set_alias(key, "candidate", 2)
        for version in ("1", "candidate", ""):  # "" is served
            answer = server.infer(name, tensors(new), model_version=version)
            print(f"model_version {version or '(served)'!r} answered version "
                  f"{answer.get_response()['model_version']}")  # fmt: skip
        server.close()
    stop()
    store.close()


if __name__ == "__main__":
    main()
