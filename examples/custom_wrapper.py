"""Your own wrapper and a WSGI entry point for it.

Serve it with any WSGI server, the store URL taken from the environment:

    MLSERVER_STORE=sqlite:///models.db waitress-serve --port 8080 --call custom_wrapper:make_app

Run as a script, it serves itself on a free port, trains once over HTTP and predicts.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd
from _http import call, serve_in_background, wait_finished
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mlserver import ModelWrapper, Registry, create_app
from mlserver.http import App
from mlserver.store import SQLStore


class ScaledRidge(ModelWrapper):
    """Ridge regression on standardized features; records its coefficients with each version."""

    name = "scaled-ridge"

    def make_model(self, alpha: float = 1.0) -> Pipeline:
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha))

    def metadata(self, model: Pipeline, x: Any, y: Any = None) -> dict[str, Any]:
        ridge = model[-1]
        return {"coefficients": dict(zip(x.columns, ridge.coef_.round(6).tolist(), strict=True))}


def make_app(store_url: str | None = None) -> App:
    """The WSGI app; the store URL comes from the argument or MLSERVER_STORE."""
    url = store_url or os.environ.get("MLSERVER_STORE", "sqlite:///models.db")
    return create_app(Registry([ScaledRidge]), SQLStore(url))


def main() -> None:
    app = make_app(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-custom-')}/models.db")
    base, stop = serve_in_background(app)
    url = f"{base}/scaled-ridge"
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    y = pd.DataFrame({"price": 2 * x["a"] + 0.1 * x["b"] + rng.normal(scale=0.01, size=200)})

    key = call("PUT", url, {"x": x.to_json(), "y": y.to_json(), "modkwargs": {"alpha": 0.1}})[
        "model-key"
    ]
    status = wait_finished(url, key)
    print("coefficients:", status["metadata"]["user"]["coefficients"])
    answer = call(
        "POST",
        url,
        {"x": x.head(3).to_json(orient="records"), "orient": "records", "model-key": key},
    )
    print("predictions:", answer["y"])
    stop()


if __name__ == "__main__":
    main()
