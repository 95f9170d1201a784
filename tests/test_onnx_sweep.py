"""Every estimator of `all_estimators()` through the ONNX serializer, over HTTP in-process.

Each one is trained by PUT on data suited to it (tests/estimators.py) and ends either FAILED
with a message naming the reason and the serializers that would work, or FINISHED with every
method it serves equal to the fitted estimator's own on the same rows: labels exactly, floats
within the tolerance documented in `mlserver.serializers.onnx`. A method the estimator lacks
is a 400. No request, hostile rows included, is a 500.

NOTE: skl2onnx's conversion time dominates (IsolationForest's 100 trees alone took ~40 s on
120 rows), so the few slowest converters are built smaller here; the rest keep their defaults.
"""

from __future__ import annotations

import warnings
from typing import Any

import falcon.testing
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.base import clone, is_regressor

from estimators import Case, cases
from mlserver import ModelWrapper, Registry, create_app
from mlserver.catalog import ImportedModels
from mlserver.serializers import OnnxSerializer
from mlserver.serializers.onnx import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE, _unpack
from mlserver.store import SQLStore
from support import settled

# A sweep of every estimator (slow: about a minute, outside the inner loop).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Class .* is deprecated:FutureWarning"),
]
METHODS = ModelWrapper.methods
# PERF: conversion seconds on 2 cores at default size; smaller models convert in ~1 s.
SMALLER = {
    "IsolationForest": {"n_estimators": 10},
    "QuantileTransformer": {"n_quantiles": 20},
    "HistGradientBoostingClassifier": {"max_iter": 10},
    "HistGradientBoostingRegressor": {"max_iter": 10},
}

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecations of estimators still listed
    CASES = {case.name: case for case in cases()}


class Sweep(ModelWrapper):
    """One estimator of the sweep, served through ONNX."""

    serializer = OnnxSerializer()

    def __init__(self, case: Case) -> None:
        self.name = case.route
        self.case = case

    def make_model(self, **modkwargs: Any) -> Any:
        model = _build(self.case)
        smaller = SMALLER.get(self.case.name)
        return model.set_params(**smaller) if smaller else model


def _build(case: Case) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated estimators still listed
        return case.make()


def _body(frame: pd.DataFrame | pd.Series) -> Any:
    return orjson.loads(frame.to_json(orient="split"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """An app serving every case through ONNX, each trained once; waits for all jobs."""
    registry = Registry([Sweep(case) for case in CASES.values()])
    store = SQLStore(f"sqlite:///{tmp_path_factory.mktemp('sweep') / 'models.db'}")
    app = create_app(registry, store, max_queued_jobs=len(CASES))
    client = falcon.testing.TestClient(app)
    with warnings.catch_warnings():
        # NOTE: the training threads see these filters too: convergence and deprecation
        # warnings on tiny data are not what the sweep is about.
        warnings.simplefilter("ignore")
        keys, status = _train_all(client)
    yield client, store, keys, status
    app.close()
    store.close()


def _train_all(client: falcon.testing.TestClient) -> tuple[dict[str, str], dict[str, Any]]:
    keys = {}
    for case in CASES.values():
        body = {"x": _body(case.x), "orient": "split"}
        if case.y is not None:
            body["y"] = _body(case.y)
        response = client.simulate_put(f"/{case.route}", json=body)
        assert response.status_code in (200, 202), (case.name, response.json)
        keys[case.name] = response.json["model-key"]
    status = {
        name: settled(client, CASES[name].route, key, timeout=300) for name, key in keys.items()
    }
    return keys, status


def _native(store: SQLStore, case: Case, key: str) -> Any:
    """The fitted estimator the graph was exported from (the artifact keeps it)."""
    version = store.newest(case.route, key, finished=True)
    return OnnxSerializer().loads_for_update(store.load_blob(version))


def _expected(native: Any, method: str, x: pd.DataFrame) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = getattr(native, method)(x.astype(np.float32).astype(np.float64))
    if hasattr(values, "toarray"):
        values = values.toarray()
    values = np.asarray(values)
    return values.reshape(len(x), -1)


def _assert_equal(expected: np.ndarray, data: list[list[Any]], exact: bool, what: str) -> None:
    got = pd.DataFrame(data).to_numpy()
    assert got.shape == expected.shape, what
    if exact or expected.dtype.kind not in "fc":
        assert got.tolist() == expected.tolist(), what
        return
    got = got.astype(np.float64)  # JSON null is NaN
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(
        got, expected, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE * scale, err_msg=what
    )


@pytest.mark.parametrize("name", CASES)
def test_onnx_version_equals_its_estimator_or_fails_saying_why(sweep, name):
    """FAILED names why and what would work; FINISHED serves the estimator's own answers."""
    client, store, keys, status = sweep
    case, key = CASES[name], keys[name]
    assert name in status, f"{name} still RUNNING after the sweep's deadline"
    body = status[name]
    if body["status"] == "FAILED":
        error = body["error"]
        assert error, body
        if "joblib or skops" not in error:  # not refused by ONNX: the estimator's own fit
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clone(_build(case)).fit(case.x, case.y)
            except Exception:  # the estimator cannot learn this data: FAILED is its answer
                return
            pytest.fail(f"FAILED without naming an ONNX reason, yet {name} fits: {error}")
        return
    assert body["status"] == "FINISHED", body
    native = _native(store, case, key)
    served = [m for m in METHODS if callable(getattr(native, m, None))]
    assert "predict" in served or "transform" in served
    primary = "predict" if "predict" in served else "transform"
    # Methods a graph may lack where it serves the estimator's main answers.
    secondary = {"decision_function", "transform"} - {primary}
    answered = []
    for method in METHODS:
        if method == "predict" and "predict" not in served:
            continue  # choosing a method for models without predict is not ONNX's concern
        response = client.simulate_post(
            f"/{case.route}",
            json={"x": _body(case.x), "orient": "split", "model-key": key, "method": method},
        )
        if method not in served:
            assert response.status_code == 400, (method, response.json)
            continue
        if response.status_code == 400 and method in secondary:
            # The graph has no output for it (LDA's transform beside its probabilities):
            # not served, and the answer says which methods are.
            assert "has no method" in response.json["description"]
            continue
        assert response.status_code == 200, (method, response.json)
        exact = method == "predict" and not is_regressor(native)
        expected = _expected(native, method, case.x)
        _assert_equal(expected, response.json["y"]["data"], exact, f"{name}.{method}")
        answered.append(method)
    assert primary in answered


HOSTILE = {
    "no rows": lambda x: x.iloc[:0],
    "missing values": lambda x: x.iloc[:2] * np.nan,
    "beyond float32": lambda x: x.iloc[:2] * 1e39,
}


@pytest.mark.parametrize("rows", HOSTILE)
def test_no_onnx_version_answers_hostile_rows_with_a_500(sweep, rows):
    """Empty, NaN and float32-overflowing rows get a 200 or a 4xx from every served model."""
    client, _, keys, status = sweep
    for name, key in keys.items():
        if status.get(name, {}).get("status") != "FINISHED":
            continue
        case = CASES[name]
        method = "predict" if callable(getattr(_build(case), "predict", None)) else "transform"
        x = HOSTILE[rows](case.x)
        response = client.simulate_post(
            f"/{case.route}",
            json={"x": _body(x), "orient": "split", "model-key": key, "method": method},
        )
        assert response.status_code < 500, (name, response.json)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """An app serving only the `imported` route, where bare graphs are imported."""
    store = SQLStore(f"sqlite:///{tmp_path_factory.mktemp('foreign') / 'models.db'}")
    app = create_app(Registry([ImportedModels()]), store)
    yield falcon.testing.TestClient(app)
    app.close()
    store.close()


def _bare_graph(store: SQLStore, case: Case, key: str) -> bytes:
    """A version's graph without the metadata this server writes: as another exporter
    would leave it."""
    import onnx

    version = store.newest(case.route, key, finished=True)
    graph, _ = _unpack(store.load_blob(version))
    model = onnx.load_from_string(graph)
    del model.metadata_props[:]
    return model.SerializeToString()


@pytest.mark.parametrize("name", CASES)
def test_a_graph_exported_elsewhere_answers_as_its_estimator(sweep, foreign, name):
    """Every FINISHED version's bare graph, imported without a sample, serves its first
    output as `predict` (the estimator's predict, or transform without one) and a
    classifier's probabilities as `predict_proba`, equal to the estimator's own; or the
    import is a 400 saying why."""
    _, store, keys, status = sweep
    if status[name]["status"] != "FINISHED":
        return
    case, key = CASES[name], keys[name]
    answer = foreign.simulate_put(
        "/imported/import",
        params={"serializer": "onnx"},
        body=_bare_graph(store, case, key),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert answer.status_code in (201, 400), (name, answer.text)
    if answer.status_code == 400:
        assert answer.json["title"] == "Artifact not importable", answer.json
        return
    native = _native(store, case, key)
    features = [f["name"] for f in answer.json["metadata"]["features"]]
    x = case.x.set_axis(features, axis=1) if features != list(case.x.columns) else case.x
    body = {"x": _body(x), "orient": "split", "model-key": answer.json["model-key"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = foreign.simulate_post("/imported", json=body)
    assert predicted.status_code == 200, (name, predicted.text)
    primary = "predict" if callable(getattr(native, "predict", None)) else "transform"
    exact = primary == "predict" and not is_regressor(native)
    expected = _expected(native, primary, case.x)
    _assert_equal(expected, predicted.json["y"]["data"], exact, f"{name}.{primary}")
    proba = foreign.simulate_post("/imported", json={**body, "method": "predict_proba"})
    assert proba.status_code in (200, 400), (name, proba.text)
    if proba.status_code == 200:
        expected = _expected(native, "predict_proba", case.x)
        _assert_equal(expected, proba.json["y"]["data"], False, f"{name}.predict_proba")
