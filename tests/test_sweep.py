"""Every estimator of scikit-learn, trained and served over HTTP: each answer equals the
model's own, or is a 4xx that says why; never a 500."""

from __future__ import annotations

import warnings
from typing import Any

import falcon.testing
import numpy as np
import pandas as pd
import pytest

from estimators import Case, cases
from mlserver import ModelWrapper, Registry, create_app
from mlserver.catalog import ImportedModels
from mlserver.serializers import JoblibSerializer
from mlserver.store import SQLStore
from support import settled

# A sweep of every estimator: about a minute, outside the inner loop.
pytestmark = pytest.mark.slow

CASES = cases()
METHODS = (None, "predict", "predict_proba", "decision_function", "transform")


def _wrapper(case: Case, serializer: str) -> ModelWrapper:
    namespace = {
        "name": case.route,
        "serializer": serializer,
        "make_model": lambda self, **modkwargs: case.make(),
        "__doc__": f"{case.name} for the sweep.",
    }
    return type(f"{case.name}Sweep", (ModelWrapper,), namespace)()


def _split(data: pd.DataFrame | pd.Series) -> dict[str, Any]:
    """orient=split as a JSON value, exactly (DataFrame.to_json rounds floats)."""
    index = list(range(len(data)))
    if isinstance(data, pd.Series):
        return {"name": data.name, "index": index, "data": data.tolist()}
    return {"columns": list(data.columns), "index": index, "data": data.to_numpy().tolist()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One app serving every estimator with joblib, each fitted once."""
    path = tmp_path_factory.mktemp("sweep") / "models.db"
    registry = Registry(_wrapper(case, "joblib") for case in CASES)
    app = create_app(
        registry, SQLStore(f"sqlite:///{path}"), training_threads=2, max_queued_jobs=len(CASES)
    )
    client = falcon.testing.TestClient(app)
    keys = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # estimators warn about convergence on tiny data
        for case in CASES:
            body = {"x": _split(case.x), "orient": "split"}
            if case.y is not None:
                body["y"] = _split(case.y)
            response = client.simulate_put(f"/{case.route}", json=body)
            assert response.status_code == 202, (case.name, response.text)
            keys[case.name] = response.json["model-key"]
        statuses = {}
        for case in CASES:
            statuses[case.name] = settled(client, case.route, keys[case.name], timeout=300)
    yield client, keys, statuses, app
    app.close()


def _stored_model(app, route: str, key: str) -> Any:
    version = app.service.store.newest(route, key, finished=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated estimators warn when unpickled
        return JoblibSerializer().loads(app.service.store.load_blob(version))


def _expected(model: Any, method: str, x: pd.DataFrame) -> np.ndarray:
    values = getattr(model, method)(x)
    if hasattr(values, "toarray"):
        values = values.toarray()
    values = np.asarray(values.to_numpy() if isinstance(values, pd.DataFrame) else values)
    return values[:, None] if values.ndim == 1 else values


def _answered(body: dict[str, Any]) -> np.ndarray:
    rows = body["y"]["data"]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=object)


def _same(answer: np.ndarray, expected: np.ndarray) -> bool:
    if answer.shape != expected.shape:
        return False
    if expected.dtype.kind in "biuf":
        return np.array_equal(answer.astype(np.float64), expected.astype(np.float64), True)
    return [[str(v) for v in row] for row in answer] == [[str(v) for v in r] for r in expected]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_estimator_answers_exactly_or_says_why(served, case):
    """A fitted estimator's every answer equals the stored model's own on the same rows,
    or is a 400/422 naming the reason; a failed fit says why; nothing is a 500."""
    client, keys, statuses, app = served
    status = statuses[case.name]
    if status["status"] == "FAILED":
        assert status["error"] and ":" in status["error"], status
        return
    assert status["status"] == "FINISHED", status
    model = _stored_model(app, case.route, keys[case.name])
    for method in METHODS:
        body = {"x": _split(case.x), "orient": "split", "model-key": keys[case.name]}
        if method is not None:
            body["method"] = method
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = client.simulate_post(f"/{case.route}", json=body)
        assert response.status_code in (200, 400, 422), (case.name, method, response.text)
        if response.status_code != 200:
            assert response.json["description"], response.json
            has = callable(getattr(model, method or "predict", None))
            if response.status_code == 400:
                assert response.json["parameter"] == "method"
                assert method is None or not has, (case.name, method, response.text)
            continue
        served_method = response.json["method"]
        assert method in (None, served_method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = _expected(model, served_method, case.x)
        assert _same(_answered(response.json), expected), (case.name, served_method)


def _predict(served, name: str, rows: int | None = None):
    """A POST without method for the named estimator's key; the case and the answer."""
    client, keys, _, _ = served
    case = next(c for c in CASES if c.name == name)
    x = case.x if rows is None else case.x.head(rows)
    body = {"x": _split(x), "orient": "split", "model-key": keys[case.name]}
    return case, client.simulate_post(f"/{case.route}", json=body)


def test_a_transformer_without_method_answers_its_transform(served):
    """A model without predict but with transform (StandardScaler) answers `transform`
    when no method is given, and says so in the answer."""
    _, keys, _, app = served
    case, response = _predict(served, "StandardScaler", rows=3)
    assert response.status_code == 200, response.text
    assert response.json["method"] == "transform"
    model = _stored_model(app, case.route, keys[case.name])
    assert _same(_answered(response.json), model.transform(case.x.head(3)))


def test_a_model_with_nothing_to_serve_is_a_400_naming_why(served):
    """DBSCAN has no predict, transform or probabilities: a predict is a 400 that says so."""
    _, response = _predict(served, "DBSCAN")
    assert response.status_code == 400
    assert "DBSCAN" in response.json["description"]
    assert response.json["parameter"] == "method"


def test_sparse_output_is_served_dense(served):
    """OneHotEncoder's sparse output comes back as the dense table it stands for."""
    _, keys, _, app = served
    case, response = _predict(served, "OneHotEncoder")
    assert response.status_code == 200, response.text
    model = _stored_model(app, case.route, keys[case.name])
    expected = model.transform(case.x).toarray()
    assert _same(_answered(response.json), expected)
    assert response.json["y"]["columns"] == model.get_feature_names_out().tolist()


def test_sparse_output_above_the_limit_is_a_422_naming_its_shape(tmp_path):
    """A sparse output wider than max_output_cells allows is refused with its shape."""
    case = next(c for c in CASES if c.name == "OneHotEncoder")
    registry = Registry([_wrapper(case, "joblib")])
    app = create_app(
        registry, SQLStore(f"sqlite:///{tmp_path / 'models.db'}"), max_output_cells=100
    )
    client = falcon.testing.TestClient(app)
    try:
        body = {"x": _split(case.x), "orient": "split"}
        key = client.simulate_put(f"/{case.route}", json=body).json["model-key"]
        assert settled(client, case.route, key)["status"] == "FINISHED"
        response = client.simulate_post(f"/{case.route}", json={**body, "model-key": key})
        assert response.status_code == 422
        width = len(case.x) * case.x.shape[1]  # every value distinct: one column each
        assert f"sparse output of {len(case.x)} x {width}" in response.json["description"]
    finally:
        app.close()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An app serving only the `imported` route, taking pickles (the sweep sends its own)."""
    path = tmp_path_factory.mktemp("imports") / "models.db"
    app = create_app(
        Registry([ImportedModels()]), SQLStore(f"sqlite:///{path}"), allow_pickle_import=True
    )
    yield falcon.testing.TestClient(app)
    app.close()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_estimator_exported_and_imported_again_answers_the_same(served, imported, case):
    """A version's exported bytes, imported into the `imported` route without a sample,
    either answer every method exactly as the version they came from, or are a 400 that
    says why (a schema the model does not tell, rows it cannot predict on)."""
    client, keys, statuses, _ = served
    if statuses[case.name]["status"] != "FINISHED":
        return
    key = keys[case.name]
    artifact = client.simulate_get(f"/{case.route}/{key}/versions/1/artifact")
    assert artifact.status_code == 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = imported.simulate_put(
            "/imported/import",
            params={"serializer": artifact.headers["x-serializer"]},
            body=artifact.content,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert answer.status_code in (201, 400), (case.name, answer.text)
    if answer.status_code == 400:
        assert answer.json["title"] == "Artifact not importable", answer.json
        return
    new_key = answer.json["model-key"]
    for method in METHODS:
        body = {"x": _split(case.x), "orient": "split"}
        if method is not None:
            body["method"] = method
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = client.simulate_post(f"/{case.route}", json={**body, "model-key": key})
            again = imported.simulate_post("/imported", json={**body, "model-key": new_key})
        assert again.status_code == original.status_code, (case.name, method, again.text)
        if original.status_code == 200:
            ours, theirs = again.json["y"], original.json["y"]
            assert ours["data"] == theirs["data"], (case.name, method)
            if again.json["method"] != "predict":  # predict's column is the target: unknown
                assert ours == theirs, (case.name, method)
