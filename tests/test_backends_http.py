"""Serializers and prediction methods through the HTTP API, on a real SQLite store."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor

from mlserver import ModelWrapper, Registry, wrap_estimator
from mlserver.serializers import OnnxSerializer, SkopsSerializer
from support import fit_body, in_process, predict, raw_sql, settled, train, wait_until
from test_serializers import Opaque

RNG = np.random.default_rng(3)
X = pd.DataFrame(RNG.normal(size=(120, 3)).round(6), columns=["a", "b", "c"])
X = X[(X["a"] - X["b"]).abs() > 0.3]
LABELS = pd.Series(np.where(X["a"] > X["b"], "up", "down"), index=X.index, name="move")
VALUES = pd.Series((X["a"] * 3 - X["c"]).round(6), index=X.index, name="value")


class OpaqueOnnx(ModelWrapper):
    """An estimator skl2onnx cannot convert, served as ONNX."""

    name = "opaque-onnx"
    serializer = "onnx"

    def make_model(self, **modkwargs):
        return Opaque()


class ProbaOnly(ModelWrapper):
    """A classifier whose clients may ask for labels and probabilities, nothing else."""

    name = "proba-only"
    methods = ("predict", "predict_proba")

    def make_model(self, **modkwargs):
        return LogisticRegression(**modkwargs)


def backends() -> Registry:
    return Registry(
        [
            wrap_estimator(LogisticRegression, "logreg-joblib"),
            wrap_estimator(LogisticRegression, "logreg-onnx", serializer="onnx"),
            wrap_estimator(LogisticRegression, "logreg-skops", serializer="skops"),
            wrap_estimator(RandomForestClassifier, "forest-skops", serializer=SkopsSerializer()),
            wrap_estimator(
                RandomForestClassifier,
                "forest-trusted",
                serializer=SkopsSerializer(trusted=["sklearn.tree._tree.Tree"]),
            ),
            wrap_estimator(LinearRegression, "linreg-onnx", serializer="onnx"),
            wrap_estimator(KMeans, "kmeans-onnx", serializer="onnx"),
            wrap_estimator(SGDRegressor, "sgd-onnx", serializer="onnx", update="partial_fit"),
            wrap_estimator(
                SGDRegressor,
                "sgd-frozen",
                serializer=OnnxSerializer(keep_native=False),
                update="partial_fit",
            ),
            OpaqueOnnx,
            ProbaOnly,
        ]
    )


@pytest.fixture
def client(sqlite_url):
    """The backends' models on the test's SQLite file, called in process."""
    with in_process(backends(), sqlite_url) as client:
        yield client


def frame(response) -> pd.DataFrame:
    return pd.read_json(io.StringIO(response.json["y"]), orient="split", precise_float=True)


@pytest.mark.parametrize("model", ["logreg-joblib", "logreg-onnx", "logreg-skops"])
def test_predict_proba_columns_are_class_labels_on_every_backend(client, model):
    """predict_proba answers one column per class, named by label, for all three serializers."""
    key, status = train(client, model, X, LABELS)
    assert status["status"] == "FINISHED", status
    native = LogisticRegression().fit(X, LABELS)
    labels = frame(predict(client, model, key, X))
    np.testing.assert_array_equal(labels["move"].to_numpy(), native.predict(X))
    proba = frame(predict(client, model, key, X, method="predict_proba"))
    assert list(proba.columns) == ["down", "up"] and list(proba.index) == list(X.index)
    tolerance = 1e-5 if model.endswith("onnx") else 0
    np.testing.assert_allclose(proba.to_numpy(), native.predict_proba(X), atol=tolerance)


def test_decision_function_and_transform(client):
    """decision_function names its binary column by the positive class; transform works."""
    key, _ = train(client, "logreg-joblib", X, LABELS)
    scores = frame(predict(client, "logreg-joblib", key, X, method="decision_function"))
    assert list(scores.columns) == ["up"]
    expected = LogisticRegression().fit(X, LABELS).decision_function(X)
    np.testing.assert_allclose(scores["up"].to_numpy(), expected)
    key, _ = train(client, "kmeans-onnx", X, modkwargs={"n_clusters": 3, "random_state": 0})
    distances = frame(predict(client, "kmeans-onnx", key, X, method="transform"))
    native = KMeans(n_clusters=3, random_state=0).fit(X)
    np.testing.assert_allclose(distances.to_numpy(), native.transform(X), rtol=1e-4, atol=1e-4)
    clusters = frame(predict(client, "kmeans-onnx", key, X))
    np.testing.assert_array_equal(clusters["y"].to_numpy(), native.predict(X))


def test_unknown_and_unavailable_methods_are_400s_naming_the_allowed_ones(client):
    """A method outside the wrapper's list, or one the model lacks, is a 400 listing options."""
    key, _ = train(client, "proba-only", X, LABELS)
    refused = predict(client, "proba-only", key, X, method="decision_function")
    assert refused.status_code == 400
    assert "predict, predict_proba" in refused.json["description"]
    key, _ = train(client, "linreg-onnx", X, VALUES)
    missing = predict(client, "linreg-onnx", key, X, method="predict_proba")
    assert missing.status_code == 400 and missing.json["parameter"] == "method"
    assert "available: predict" in missing.json["description"]


def test_models_lists_methods(client):
    """GET /models tells each model's allowed prediction methods."""
    models = {m["model"]: m for m in client.simulate_get("/models").json["models"]}
    assert models["proba-only"]["methods"] == ["predict", "predict_proba"]
    assert "transform" in models["logreg-joblib"]["methods"]
    assert models["logreg-onnx"]["serializer"] == "onnx"


def test_onnx_regression_parity_over_http(client):
    """An ONNX-served linear regression answers within float32 tolerance of scikit-learn."""
    key, _ = train(client, "linreg-onnx", X, VALUES)
    got = frame(predict(client, "linreg-onnx", key, X))["value"].to_numpy()
    np.testing.assert_allclose(got, LinearRegression().fit(X, VALUES).predict(X), rtol=1e-4)


def test_onnx_update_re_exports_from_the_native_model(client):
    """PATCH on an ONNX model updates its native model and serves the re-exported graph."""
    key, _ = train(client, "sgd-onnx", X, VALUES, modkwargs={"random_state": 0})
    x2 = X * 0.5
    y2 = VALUES * 0.5
    response = client.simulate_patch("/sgd-onnx", json=fit_body(x2, y2, **{"model-key": key}))
    assert response.status_code == 202
    wait_until(
        lambda: (
            client.simulate_get("/sgd-onnx", params={"model-key": key}).json["status"] == "FINISHED"
        )
    )
    native = SGDRegressor(random_state=0).fit(X, VALUES)
    native.partial_fit(x2, y2)
    answer = predict(client, "sgd-onnx", key, X)
    assert answer.json["version"] == 2
    np.testing.assert_allclose(frame(answer)["value"].to_numpy(), native.predict(X), rtol=1e-4)


def test_onnx_without_native_model_takes_no_patch(client):
    """A wrapper whose ONNX artifacts keep no native model answers PATCH with 405."""
    response = client.simulate_patch("/sgd-frozen", json={"x": "{}", "model-key": "k"})
    assert response.status_code == 405 and "PATCH" not in response.headers["allow"]


def test_unconvertible_model_fails_its_version_and_the_server_serves_on(client):
    """A model skl2onnx cannot convert ends FAILED with the converter's message."""
    key, status = train(client, "opaque-onnx", X, VALUES)
    assert status["status"] == "FAILED" and "Opaque" in status["error"]
    refused = predict(client, "opaque-onnx", key, X)
    assert refused.status_code == 409 and refused.json["status"] == "FAILED"
    assert client.simulate_get("/health").status_code == 200


def test_untrusted_skops_types_are_409_naming_them(client):
    """A skops model with types the server does not trust is refused with the type names."""
    key, status = train(client, "forest-skops", X, LABELS, modkwargs={"n_estimators": 3})
    assert status["status"] == "FINISHED"
    refused = predict(client, "forest-skops", key, X)
    assert refused.status_code == 409
    assert "sklearn.tree._tree.Tree" in refused.json["description"]
    key, _ = train(client, "forest-trusted", X, LABELS, modkwargs={"n_estimators": 3})
    assert predict(client, "forest-trusted", key, X).status_code == 200


def _pretend_trained_with(store_url: str, key: str, version: str) -> None:
    """Rewrite the stored metadata of `key` as if another scikit-learn had trained it."""
    [(row_id, metadata)] = raw_sql(
        store_url, "SELECT id, metadata FROM {table} WHERE key = ?", (key,)
    )
    meta = orjson.loads(metadata)
    meta["libraries"]["scikit-learn"] = version
    update = "UPDATE {table} SET metadata = ? WHERE id = ?"
    raw_sql(store_url, update, (orjson.dumps(meta).decode(), row_id))


def test_version_skew_is_reported_or_refused(sqlite_url, caplog):
    """Another scikit-learn major.minor at training time: warnings by default, 409 if refused."""
    with in_process(backends(), sqlite_url) as client:
        key, _ = train(client, "logreg-joblib", X, LABELS)
        _pretend_trained_with(sqlite_url, key, "0.1.0")
        status = client.simulate_get("/logreg-joblib", params={"model-key": key}).json
        assert status["warnings"] == [
            f"trained with scikit-learn 0.1.0, served with scikit-learn {_sklearn()}"
        ]
        with caplog.at_level("WARNING", logger="mlserver.service"):
            first = predict(client, "logreg-joblib", key, X)
            second = predict(client, "logreg-joblib", key, X)
        assert first.status_code == 200 and first.json["warnings"] == status["warnings"]
        assert second.json["warnings"] == status["warnings"]
        assert sum("version_skew" in r.getMessage() for r in caplog.records) == 1
    with in_process(backends(), sqlite_url, refuse_version_skew=True) as strict:
        refused = predict(strict, "logreg-joblib", key, X)
        assert refused.status_code == 409 and "scikit-learn 0.1.0" in refused.json["description"]


def _sklearn() -> str:
    import sklearn

    return sklearn.__version__


def test_no_warnings_field_without_skew(client):
    """Versions trained with this process's libraries carry no warnings field."""
    key, status = train(client, "logreg-onnx", X, LABELS)
    assert "warnings" not in status
    assert "warnings" not in predict(client, "logreg-onnx", key, X).json


def test_update_refuses_skew_when_predict_would(sqlite_url):
    """With refuse_version_skew, a PATCH on a version from other library versions is a 409
    and starts nothing: updating unpickles the base just as serving would."""
    with in_process(backends(), sqlite_url, refuse_version_skew=True) as client:
        key, status = train(client, "sgd-onnx", X, VALUES)
        assert status["status"] == "FINISHED"
        _pretend_trained_with(sqlite_url, key, "0.1.0")
        refused = client.simulate_patch("/sgd-onnx", json=fit_body(X, VALUES, **{"model-key": key}))
        assert refused.status_code == 409, refused.json
        assert (
            "not updated" in refused.json["description"] and "0.1.0" in refused.json["description"]
        )
        after = client.simulate_get("/sgd-onnx", params={"model-key": key}).json
        assert (after["version"], after["status"]) == (1, "FINISHED")


def test_update_loads_its_base_with_the_serializer_it_was_stored_with(sqlite_url):
    """A model whose wrapper moved from joblib to ONNX: PATCH reads the joblib base and
    stores the update as ONNX, which then predicts like scikit-learn would."""
    before = Registry([wrap_estimator(SGDRegressor, "sgd", update="partial_fit")])
    with in_process(before, sqlite_url) as client:
        key, status = train(client, "sgd", X, VALUES, modkwargs={"random_state": 0})
        assert status["status"] == "FINISHED"
    after = Registry([wrap_estimator(SGDRegressor, "sgd", serializer="onnx", update="partial_fit")])
    with in_process(after, sqlite_url) as client:
        patched = client.simulate_patch("/sgd", json=fit_body(X, VALUES, **{"model-key": key}))
        assert patched.status_code == 202, patched.json
        status = settled(client, "sgd", key)
        assert (status["status"], status["version"]) == ("FINISHED", 2), status["error"]
        expected = SGDRegressor(random_state=0).fit(X, VALUES).partial_fit(X, VALUES).predict(X)
        served = frame(predict(client, "sgd", key, X))["value"].to_numpy()
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)  # ONNX: float32
