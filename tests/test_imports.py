"""Models trained elsewhere, imported over HTTP (`PUT /{model}/import`) on each backend, and
exported back (`GET .../versions/{n}/artifact`): ONNX and skops by default, skops types the
server does not trust refused, joblib and pickle only when the server allows them, junk
refused with nothing stored, exports byte for byte, predictions equal to the estimator's."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn.base
import skops.io
from skl2onnx import to_onnx
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlserver.catalog import catalog
from mlserver.frames.keys import artifact_key, name_key
from mlserver.http.auth import hash_token
from mlserver.store import SQLStore
from support import (
    classification,
    in_process,
    predictions,
    regression,
    settled,
    stored_keys,
)

OCTET = {"Content-Type": "application/octet-stream"}
TREE = "sklearn.tree._tree.Tree"


def put_artifact(client, model: str, blob: bytes, **params):
    return client.simulate_put(f"/{model}/import", params=params, body=blob, headers=OCTET)


def predict(client, model: str, key: str, x: pd.DataFrame, **params):
    body = {"model-key": key, "x": x.to_json(orient="split"), "orient": "split", **params}
    return client.simulate_post(f"/{model}", json=body)


def probabilities(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array(json.loads(response.json["y"])["data"])


def joblib_bytes(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def test_skops_import_serves_the_estimators_own_predictions_and_exports_its_bytes(store_url):
    x, y = regression()
    ridge = Ridge(alpha=0.3).fit(x, y)
    blob = skops.io.dumps(ridge)
    with in_process(catalog(), store_url) as client:
        answer = put_artifact(client, "ridge", blob, serializer="skops")
        assert answer.status_code == 201, answer.text
        v = answer.json
        sha = hashlib.sha256(blob).hexdigest()
        assert v["model-key"] == artifact_key(sha)
        assert answer.headers["location"] == f"/ridge/{v['model-key']}/versions/1"
        assert (v["status"], v["version"], v["serializer"], v["sha256"]) == (
            "FINISHED",
            1,
            "skops",
            sha,
        )
        assert v["size"] == len(blob) and v["aliases"] == ["served"]
        assert v["lineage"] == {
            "data": None,
            "rows": None,
            "columns": x.shape[1],
            "parent": None,
            "kind": "import",
            "source": None,
        }
        metadata = v["metadata"]
        assert [f["name"] for f in metadata["features"]] == list(x.columns)
        assert metadata["libraries"]["scikit-learn"] == sklearn.__version__
        assert metadata["imported"]["source"] == "http"
        assert metadata["imported"]["model"] == "Ridge"
        # the estimator's own answers, exactly
        got = predictions(predict(client, "ridge", v["model-key"], x))
        np.testing.assert_array_equal(got, ridge.predict(x))
        exported = client.simulate_get(f"/ridge/{v['model-key']}/versions/1/artifact")
        assert exported.status_code == 200
        assert exported.content == blob
        assert exported.headers["x-sha256"] == sha
        assert exported.headers["x-serializer"] == "skops"
        assert exported.headers["content-type"] == "application/octet-stream"
        # the same artifact again is the version it already is
        again = put_artifact(client, "ridge", blob, serializer="skops")
        assert again.status_code == 200 and again.json["version"] == 1
        # an imported version has no data to refit from
        refit = client.simulate_post(f"/ridge/{v['model-key']}/refit")
        assert refit.status_code == 409 and "imported" in refit.json["description"]
        data = client.simulate_get(f"/ridge/{v['model-key']}/versions/1/data")
        assert data.status_code == 404


def test_skops_types_the_server_does_not_trust_are_refused_and_nothing_is_stored(store_url):
    x, y = classification()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    blob = skops.io.dumps(forest)
    with in_process(catalog(), store_url) as client:
        refused = put_artifact(client, "imported", blob, serializer="skops")
        assert refused.status_code == 400
        assert TREE in refused.json["description"]
        assert "trusted_types" in refused.json["description"]
    assert stored_keys(store_url, "imported") == []
    # trusted by the server's configuration (never by the artifact): imported and served
    with in_process(catalog(), store_url, trusted_types=(TREE,)) as client:
        answer = put_artifact(client, "imported", blob)  # skops guessed from the bytes
        assert answer.status_code == 201, answer.text
        key = answer.json["model-key"]
        got = probabilities(predict(client, "imported", key, x, method="predict_proba"))
        np.testing.assert_array_equal(got, forest.predict_proba(x))
        np.testing.assert_array_equal(
            predictions(predict(client, "imported", key, x)), forest.predict(x)
        )
    # a server without the setting refuses to load what it does not trust (409), not a 500
    with in_process(catalog(), store_url) as client:
        assert predict(client, "imported", key, x).status_code == 409


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_graphs_from_skl2onnx_serve_their_labels_and_probabilities(store_url, zipmap):
    x, y = classification()
    model = LogisticRegression(max_iter=500).fit(x.to_numpy(), y)
    options = None if zipmap else {id(model): {"zipmap": False}}
    graph = to_onnx(model, x.to_numpy()[:1].astype(np.float32), options=options)
    blob = graph.SerializeToString()
    with in_process(catalog(), store_url) as client:
        answer = put_artifact(client, "imported", blob, serializer="onnx", name="churn")
        assert answer.status_code == 201, answer.text
        v = answer.json
        assert v["model-key"] == name_key("churn") and v["metadata"]["name"] == "churn"
        assert v["metadata"]["libraries"]["skl2onnx"]
        # a graph of one [N, k] input: columns by position
        assert [f["name"] for f in v["metadata"]["features"]] == list(range(x.shape[1]))
        rows = {"model-key": v["model-key"], "orient": "values", "x": x.to_numpy().tolist()}
        labels = client.simulate_post("/imported", json=rows)
        assert labels.status_code == 200, labels.text
        np.testing.assert_array_equal(np.ravel(labels.json["y"]), model.predict(x.to_numpy()))
        proba = client.simulate_post("/imported", json={**rows, "method": "predict_proba"})
        expected = model.predict_proba(x.to_numpy().astype(np.float32))
        np.testing.assert_allclose(np.array(proba.json["y"]), expected, rtol=1e-5, atol=1e-6)
        exported = client.simulate_get(f"/imported/{v['model-key']}/versions/1/artifact")
        assert exported.content == blob


def test_an_onnx_graph_of_doubles_is_fed_doubles(store_url):
    x, y = regression()
    model = Ridge().fit(x.to_numpy(), y)
    graph = to_onnx(model, initial_types=[("features", DoubleTensorType([None, x.shape[1]]))])
    with in_process(catalog(), store_url) as client:
        answer = put_artifact(client, "imported", graph.SerializeToString())
        assert answer.status_code == 201, answer.text
        rows = {"model-key": answer.json["model-key"], "orient": "values"}
        got = client.simulate_post("/imported", json={**rows, "x": x.to_numpy().tolist()})
        np.testing.assert_allclose(np.ravel(got.json["y"]), model.predict(x.to_numpy()), 1e-12)
        # NaN: how the graph treats it is unknown, so it is refused
        holes = x.to_numpy().tolist()
        holes[0][0] = None
        assert client.simulate_post("/imported", json={**rows, "x": holes}).status_code == 422


def test_a_pipeline_of_string_columns_is_checked_on_its_encoders_categories(store_url):
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {"color": rng.choice(["red", "green", "blue"], 80), "size": rng.normal(size=80)}
    )
    y = (x["color"] == "red") ^ (x["size"] > 0)
    pipeline = make_pipeline(
        ColumnTransformer([("color", OneHotEncoder(), ["color"])], remainder=StandardScaler()),
        LogisticRegression(),
    ).fit(x, y)
    blob = joblib_bytes(pipeline)
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        answer = put_artifact(client, "imported", blob, serializer="joblib")
        assert answer.status_code == 201, answer.text
        features = {f["name"]: f["dtype"] for f in answer.json["metadata"]["features"]}
        assert features["size"] == "float64" and features["color"] != "float64"
        got = predictions(predict(client, "imported", answer.json["model-key"], x))
        np.testing.assert_array_equal(got, pipeline.predict(x))


def test_pickles_are_refused_over_http_unless_the_server_allows_them(store_url):
    x, y = regression()
    ridge = Ridge().fit(x, y)
    for serializer, blob in (("joblib", joblib_bytes(ridge)), ("pickle", pickle.dumps(ridge))):
        with in_process(catalog(), store_url) as client:
            refused = put_artifact(client, "ridge", blob, serializer=serializer)
            assert refused.status_code == 415, refused.text
            assert "--allow-pickle-import" in refused.json["description"]
            # guessed as joblib from its first bytes: refused the same
            assert put_artifact(client, "ridge", blob).status_code == 415
        assert stored_keys(store_url, "ridge") == []
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        for serializer, blob in (("joblib", joblib_bytes(ridge)), ("pickle", pickle.dumps(ridge))):
            answer = put_artifact(client, "ridge", blob, serializer=serializer)
            assert answer.status_code == 201, answer.text
            assert answer.json["serializer"] == serializer
            got = predictions(predict(client, "ridge", answer.json["model-key"], x))
            np.testing.assert_array_equal(got, ridge.predict(x))


@pytest.mark.parametrize("serializer", [None, "onnx", "skops", "joblib", "pickle"])
def test_junk_bytes_are_a_400_and_nothing_is_stored(store_url, serializer):
    junk = b"\x80\x05 not a model at all" if serializer in ("joblib", "pickle") else b"junk" * 9
    params = {} if serializer is None else {"serializer": serializer}
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        refused = put_artifact(client, "imported", junk, **params)
        assert refused.status_code == 400, refused.text
        assert refused.json["title"] == "Artifact not importable"
        empty = put_artifact(client, "imported", b"", **params)
        assert empty.status_code == 400
    assert stored_keys(store_url, "imported") == []


def test_a_model_without_a_known_schema_or_that_cannot_predict_is_refused(store_url):
    x, y = regression()
    broken = Ridge().fit(x.to_numpy()[:, :3], y)
    broken.n_features_in_ = 5  # rows made from this schema do not fit its coefficients
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        for unknown in (Ridge(), Predictor()):  # no n_features_in_, no feature_names_in_
            refused = put_artifact(client, "ridge", joblib_bytes(unknown), serializer="joblib")
            assert refused.status_code == 400
            assert "schema" in refused.json["description"], refused.json
            assert "sample" in refused.json["description"]
        failing = put_artifact(client, "ridge", joblib_bytes(broken))
        assert failing.status_code == 400
        assert "cannot predict on rows made from its schema" in failing.json["description"]
    assert stored_keys(store_url, "ridge") == []


class Predictor:
    """Predicts, but says nothing of the columns it takes."""

    def predict(self, x):
        return np.zeros(len(x))


def test_importing_under_a_name_adds_versions_and_promote_decides_what_is_served(store_url):
    x, y = regression()
    first, second = Ridge(alpha=1).fit(x, y), Ridge(alpha=50).fit(x, y)
    blobs = skops.io.dumps(first), skops.io.dumps(second)  # zip archives: not deterministic
    with in_process(catalog(), store_url) as client:
        one = put_artifact(client, "ridge", blobs[0], name="prices")
        two = put_artifact(client, "ridge", blobs[1], name="prices", promote="never")
        assert (one.status_code, two.status_code) == (201, 201)
        key = one.json["model-key"]
        assert two.json["model-key"] == key and two.json["version"] == 2
        assert two.json["metrics"]["promoted"] is False
        np.testing.assert_array_equal(
            predictions(predict(client, "ridge", key, x)), first.predict(x)
        )
        np.testing.assert_array_equal(
            predictions(predict(client, "ridge", key, x, version=2)), second.predict(x)
        )
        exported = client.simulate_get(f"/ridge/{key}/versions/2/artifact")
        assert exported.content == blobs[1]
        three = put_artifact(client, "ridge", blobs[1], name="prices")
        assert three.status_code == 200 and three.json["version"] == 2  # newest is it already
        assert client.simulate_get(f"/ridge/{key}/versions/3/artifact").status_code == 404


def test_an_imported_model_that_learns_further_takes_patch_and_a_graph_does_not(store_url):
    x, y = regression()
    sgd = SGDRegressor(random_state=0).fit(x, y)
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        answer = put_artifact(client, "sgd-regressor", joblib_bytes(sgd))
        assert answer.status_code == 201
        key = answer.json["model-key"]
        body = {"model-key": key, "x": x.to_json(orient="split"), "y": y.to_json(orient="split")}
        patched = client.simulate_patch("/sgd-regressor", json={**body, "orient": "split"})
        assert patched.status_code == 202, patched.text
        done = settled(client, "sgd-regressor", key)
        assert done["status"] == "FINISHED" and done["version"] == 2
        v2 = client.simulate_get(f"/sgd-regressor/{key}/versions/2").json
        assert (v2["lineage"]["kind"], v2["lineage"]["parent"]) == ("update", 1)
        expected = SGDRegressor(random_state=0).fit(x, y).partial_fit(x, y)
        np.testing.assert_array_equal(
            predictions(predict(client, "sgd-regressor", key, x)), expected.predict(x)
        )
        graph = to_onnx(sgd, x.to_numpy()[:1].astype(np.float32)).SerializeToString()
        plain = put_artifact(client, "sgd-regressor", graph)
        assert plain.status_code == 201, plain.text
        body["model-key"] = plain.json["model-key"]
        refused = client.simulate_patch("/sgd-regressor", json={**body, "orient": "split"})
        assert refused.status_code == 422
        assert "learns further" in refused.json["description"]


def test_what_the_import_route_refuses_before_reading_the_artifact(store_url):
    x, y = regression()
    blob = skops.io.dumps(Ridge().fit(x, y))
    with in_process(catalog(), store_url, max_import_bytes=len(blob) - 1) as client:
        large = put_artifact(client, "ridge", blob)
        assert large.status_code == 413 and "max_import_bytes" in large.json["description"]
        wrong = client.simulate_put(
            "/ridge/import", body=blob, headers={"Content-Type": "application/json"}
        )
        assert wrong.status_code == 415
        assert put_artifact(client, "nope", blob).status_code == 404
        bad = put_artifact(client, "ridge", blob, serializer="cloudpickle")
        assert bad.status_code == 400 and bad.json["parameter"] == "serializer"
        assert put_artifact(client, "ridge", blob, promote="sometimes").status_code == 400
        assert put_artifact(client, "ridge", blob, color="red").status_code == 400
        assert client.simulate_put("/imported", json={"x": [[1]]}).status_code == 405
    assert stored_keys(store_url, "ridge") == []


def test_import_and_export_need_the_admin_scope_and_signed_stores_sign_imports(sqlite_url):
    x, y = regression()
    ridge = Ridge().fit(x, y)
    blob = skops.io.dumps(ridge)
    tokens = {hash_token("ops"): ["admin"], hash_token("trainer"): ["train", "predict"]}
    keys = {"k1": "0123456789abcdef0123456789abcdef"}
    with in_process(catalog(), sqlite_url, tokens=tokens, signing_keys=keys) as client:
        trainer = {"Authorization": "Bearer trainer", **OCTET}
        ops = {"Authorization": "Bearer ops", **OCTET}
        denied = client.simulate_put("/ridge/import", body=blob, headers=trainer)
        assert denied.status_code == 403
        answer = client.simulate_put("/ridge/import", body=blob, headers=ops)
        assert answer.status_code == 201
        key = answer.json["model-key"]
        body = {"model-key": key, "x": x.to_json(orient="split"), "orient": "split"}
        served = client.simulate_post("/ridge", json=body, headers=trainer)
        np.testing.assert_array_equal(predictions(served), ridge.predict(x))
        artifact = f"/ridge/{key}/versions/1/artifact"
        assert client.simulate_get(artifact, headers=trainer).status_code == 403
        assert client.simulate_get(artifact, headers=ops).content == blob
    store = SQLStore(sqlite_url)
    try:
        assert store.version("ridge", key, 1).signature.startswith("k1:")
    finally:
        store.close()


def test_the_scikit_learn_version_an_artifact_declares_is_recorded(store_url, monkeypatch):
    x, y = regression()
    ridge = Ridge().fit(x, y)
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")
    blob = joblib_bytes(ridge)  # its state records the version scikit-learn claims now
    monkeypatch.undo()
    with in_process(catalog(), store_url, allow_pickle_import=True) as client:
        answer = put_artifact(client, "ridge", blob)
        assert answer.status_code == 201, answer.text
        assert answer.json["metadata"]["libraries"] == {"scikit-learn": "1.0.2"}
        status = client.simulate_get("/ridge", params={"model-key": answer.json["model-key"]})
        assert status.json["warnings"] == [
            f"trained with scikit-learn 1.0.2, served with scikit-learn {sklearn.__version__}"
        ]
