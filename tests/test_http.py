"""The HTTP contract through falcon.testing, on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json

import falcon.testing
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor

from mlserver import create_app
from mlserver.frames.orients import ORIENTS
from mlserver.http.parameters import operation_of, verbs_of
from mlserver.service import OPERATIONS
from mlserver.store import SQLStore
from support import (
    classification,
    fit_body,
    in_process,
    predict,
    predict_body,
    registry,
    regression,
    request,
    settled,
    train,
    wait_until,
)


@pytest.fixture
def client(store_url):
    """A test client on an app with the test registry and a real store."""
    with in_process(registry(), store_url, max_body_bytes=2_000_000) as client:
        yield client


# -- the happy paths -------------------------------------------------------------------------


def test_fit_status_predict_matches_estimator(client):
    """PUT trains, GET reports FINISHED with metadata, POST equals scikit-learn's own predict."""
    x, y = classification()
    response = request(client, "PUT", "logreg", json=fit_body(x, y))
    assert response.status_code == 202
    assert response.json["status"] == "RUNNING" and response.json["version"] == 1
    status = settled(client, "logreg", response.json["model-key"])
    assert status["status"] == "FINISHED" and status["error"] is None
    assert status["started"] <= status["finished"]
    meta = status["metadata"]
    assert meta["rows"] == 60 and meta["n_features"] == 3
    assert [f["name"] for f in meta["features"]] == ["a", "b", "c"]
    assert meta["targets"] == ["label"]
    assert meta["libraries"]["scikit-learn"] and meta["training_seconds"] >= 0
    result = predict(client, "logreg", response.json["model-key"], x)
    assert result.status_code == 200
    got = pd.read_json(io.StringIO(result.json["y"]), orient="split")
    expected = LogisticRegression().fit(x, y).predict(x)
    assert list(got.columns) == ["label"] and list(got.index) == list(x.index)
    np.testing.assert_array_equal(got["label"].to_numpy(), expected)


@pytest.mark.parametrize("orient", ORIENTS)
@pytest.mark.parametrize("as_string", [True, False], ids=["string", "value"])
def test_every_orient_in_both_forms(client, orient, as_string):
    """x and y in any orient, as text or value, train the same model and predict back in kind."""
    x, y = regression()
    body = {"orient": orient}
    for name, frame in (("x", x), ("y", y)):
        text = frame.to_json(orient=orient, double_precision=15)
        body[name] = text if as_string else orjson.loads(text)
    response = client.simulate_put("/linreg", json=body)
    assert response.status_code == 202, response.json
    key = response.json["model-key"]
    assert settled(client, "linreg", key)["status"] == "FINISHED"
    # The value form of x (JSON rather than pandas-JSON text) is not predict_body's.
    body = predict_body(key, x.head(5), orient=orient)
    if not as_string:
        body["x"] = orjson.loads(body["x"])
    result = request(client, "POST", "linreg", json=body)
    assert result.status_code == 200, result.json
    assert result.json["orient"] == orient
    y_out = result.json["y"]
    assert isinstance(y_out, str) is as_string
    text = y_out if as_string else json.dumps(y_out)
    frame = pd.read_json(io.StringIO(text), orient=orient, precise_float=True)
    expected = LinearRegression().fit(x, y).predict(x.head(5))
    np.testing.assert_allclose(frame.iloc[:, 0].to_numpy(), expected, rtol=1e-9)
    if orient in ("split", "columns", "index", "table"):
        assert list(frame.index) == list(x.head(5).index)
        # Only split and table carry a Series' name; the others leave it to the default "y".
        assert list(frame.columns) == ["target" if orient in ("split", "table") else "y"]


@pytest.mark.parametrize("orients", [("columns", "index"), ("split", "table")])
def test_same_data_in_other_orient_gives_same_key(client, orients):
    """Keys depend on the decoded data, not on the orient or form it came in."""
    x, y = regression()
    keys = set()
    for orient in orients:
        texts = {"x": x.to_json(orient=orient), "y": y.to_json(orient=orient)}
        for as_string in (True, False):
            body = texts if as_string else {k: orjson.loads(v) for k, v in texts.items()}
            response = client.simulate_put("/linreg", json={**body, "orient": orient})
            keys.add(response.json["model-key"])
    assert len(keys) == 1


def test_put_is_idempotent_and_retrain_adds_version(client):
    """A second PUT answers 200 with the FINISHED version; retrain starts version 2."""
    x, y = regression()
    key, done = train(client, "linreg", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    again = request(client, "PUT", "linreg", json=fit_body(x, y))
    assert again.status_code == 200
    assert (again.json["status"], again.json["version"]) == ("FINISHED", 1)
    retrain = request(client, "PUT", "linreg", json=fit_body(x, y, retrain="true"))
    assert retrain.status_code == 202 and retrain.json["version"] == 2
    assert settled(client, "linreg", key)["version"] == 2


def test_put_on_running_key_starts_nothing(client):
    """PUT while a version RUNNING answers 200 RUNNING, with or without retrain."""
    x, y = regression()
    first = request(client, "PUT", "slow", json=fit_body(x, y, algkwargs={"seconds": 1.0}))
    assert first.status_code == 202
    for retrain in (False, True):
        again = request(
            client, "PUT", "slow", json=fit_body(x, y, algkwargs={"seconds": 1.0}, retrain=retrain)
        )
        assert again.status_code == 200
        assert (again.json["status"], again.json["version"]) == ("RUNNING", 1)
    settled(client, "slow", first.json["model-key"])


def test_name_gives_a_stable_key(client):
    """With `name` the key depends on the name alone, not on the data."""
    x, y = regression()
    key, done = train(client, "linreg", x, y, name="prices", expect=(200, 202))
    assert done["status"] == "FINISHED", done
    other = request(client, "PUT", "linreg", json=fit_body(x.head(30), y.head(30), name="prices"))
    assert other.status_code == 200 and other.json["model-key"] == key
    other = request(client, "PUT", "linreg", json=fit_body(x, y, name="other"))
    assert other.json["model-key"] != key


def test_predict_serves_finished_version_while_retraining(client):
    """POST answers from version 1 while version 2 trains, then from version 2."""
    x, y = regression()
    key, done = train(client, "slow", x, y, name="n", algkwargs={"seconds": 0}, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    retrain = request(
        client,
        "PUT",
        "slow",
        json=fit_body(x, y, name="n", algkwargs={"seconds": 1.0}, retrain=True),
    )
    assert retrain.status_code == 202 and retrain.json["version"] == 2
    during = predict(client, "slow", key, x.head(2))
    assert during.status_code == 200 and during.json["version"] == 1
    assert settled(client, "slow", key)["version"] == 2
    assert predict(client, "slow", key, x.head(2)).json["version"] == 2


def test_patch_updates_sgd_predictions(client):
    """PATCH trains a new version from the newest one; its predictions change accordingly."""
    x, y = regression(rows=200)
    key, done = train(client, "sgd", x, y, modkwargs={"random_state": 0}, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    before = predict(client, "sgd", key, x.head(3)).json
    x2, y2 = regression(rows=200, seed=7)
    response = client.simulate_patch(
        "/sgd",
        json={
            "x": x2.to_json(orient="split"),
            "y": y2.to_json(orient="split"),
            "orient": "split",
            "model-key": key,
        },
    )
    assert response.status_code == 202 and response.json["version"] == 2
    status = settled(client, "sgd", key)
    assert status["status"] == "FINISHED" and status["metadata"]["base_version"] == 1
    after = predict(client, "sgd", key, x.head(3)).json
    assert after["version"] == 2 and after["y"] != before["y"]
    expected = SGDRegressor(random_state=0).fit(x, y)
    expected.partial_fit(x2, y2)
    got = pd.read_json(io.StringIO(after["y"]), orient="split", precise_float=True)
    np.testing.assert_allclose(got["target"].to_numpy(), expected.predict(x.head(3)))


def test_delete_removes_every_version(client):
    """DELETE answers the number of versions removed; the key is then unknown everywhere."""
    x, y = regression()
    key, done = train(client, "linreg", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    _, done = train(client, "linreg", x, y, retrain=True, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    response = client.simulate_delete("/linreg", params={"model-key": key})
    assert response.status_code == 200 and response.json == {"model-key": key, "deleted": 2}
    assert client.simulate_get("/linreg", params={"model-key": key}).status_code == 404
    assert predict(client, "linreg", key, x).status_code == 404
    assert client.simulate_delete("/linreg", json={"model-key": key}).status_code == 404


def test_delete_during_training_stays_deleted(client):
    """A job still running when its key is deleted does not bring the key back."""
    x, y = regression()
    started = request(client, "PUT", "slow", json=fit_body(x, y, algkwargs={"seconds": 0.5}))
    key = started.json["model-key"]
    assert client.simulate_delete("/slow", json={"model-key": key}).json["deleted"] == 1
    app_service = client.app.service
    wait_until(lambda: app_service.jobs.running == 0)
    assert client.simulate_get("/slow", params={"model-key": key}).status_code == 404


def test_get_without_key_lists_keys(client):
    """GET /{model} lists every key with its newest status and version."""
    x, y = regression()
    key, done = train(client, "linreg", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    failed = request(client, "PUT", "failing", json=fit_body(x, y)).json["model-key"]
    body = client.simulate_get("/linreg").json
    assert body == {
        "model": "linreg",
        "keys": [
            {
                "model-key": key,
                "status": "FINISHED",
                "version": 1,
                "finished": body["keys"][0]["finished"],
            }
        ],
        "next": None,
    }
    assert settled(client, "failing", failed)["status"] == "FAILED"
    assert client.simulate_get("/linreg", params={"model_key": key}).json["model-key"] == key


def test_unsupervised_model_without_y(client):
    """KMeans trains without y; its predictions are the estimator's cluster labels."""
    x, _ = classification()
    key, done = train(
        client,
        "kmeans",
        x,
        modkwargs={"n_clusters": 2, "random_state": 0, "n_init": 3},
        expect=(200, 202),
    )
    assert done["status"] == "FINISHED", done
    got = pd.read_json(io.StringIO(predict(client, "kmeans", key, x).json["y"]), orient="split")
    labels = KMeans(n_clusters=2, random_state=0, n_init=3).fit(x).predict(x)
    assert list(got.columns) == ["y"]
    np.testing.assert_array_equal(got["y"].to_numpy(), labels)


def test_columns_in_other_order_are_realigned(client):
    """Predict input with the training columns in another order gives the same predictions."""
    x, y = classification()
    key, done = train(client, "logreg", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    straight = predict(client, "logreg", key, x).json["y"]
    shuffled = predict(client, "logreg", key, x[["c", "a", "b"]]).json["y"]
    assert straight == shuffled


# -- failures of the job ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"), [("failing", "boom"), ("bad-serializer", "cannot serialize")]
)
def test_failed_job_is_reported_and_server_keeps_serving(client, model, message):
    """A fit or serializer error marks the version FAILED with its message; POST says 409."""
    x, y = regression()
    key = request(client, "PUT", model, json=fit_body(x, y)).json["model-key"]
    status = settled(client, model, key)
    assert status["status"] == "FAILED" and message in status["error"]
    response = predict(client, model, key, x)
    assert response.status_code == 409 and response.json["status"] == "FAILED"
    assert message in response.json["description"]
    again = request(client, "PUT", model, json=fit_body(x, y))
    assert again.status_code == 202 and again.json["version"] == 2
    assert client.simulate_get("/health").status_code == 200


# -- errors ----------------------------------------------------------------------------------


def _versions(client, model):
    return client.simulate_get(f"/{model}").json["keys"]


@pytest.mark.parametrize(
    ("method", "body", "status", "needle"),
    [
        ("PUT", {}, 400, "'x'"),
        ("PUT", {"x": "{not json"}, 400, "x: not valid JSON"),
        ("PUT", {"x": [1, 2]}, 400, "orient 'columns'"),
        ("PUT", {"x": {"a": {"0": 1}}, "orient": "sideways"}, 400, "orient must be one of"),
        ("PUT", {"x": {"a": {"0": 1}}, "retrain": "maybe"}, 400, "retrain"),
        ("PUT", {"x": {"a": {"0": 1}}, "modkwargs": [1]}, 400, "modkwargs"),
        (
            "PUT",
            {"x": {"a": {"0": 1}}, "modkwargs": {"fit_intercept": "yes"}},
            400,
            "fit_intercept",
        ),
        ("PUT", {"x": {"a": {"0": 1}}, "modkwargs": {"nope": 1}}, 400, "nope"),
        (
            "PUT",
            {"x": {"a": {"0": 1}}, "y": {"t": {"0": 1, "1": 2}}},
            400,
            "x has 1 rows but y has 2",
        ),
        ("PUT", {"x": {"a": {"0": 1}}, "colour": "red"}, 400, "colour"),
        ("PUT", {"x": {"a": {"0": 1}}, "name": 5}, 400, "name"),
        ("PUT", {"x": {"a": {"0": [1, 2]}}}, 400, "cells must be"),
        ("PUT", {"x": [{"a": {"b": 1}}], "orient": "records"}, 400, "column 'a' holds lists"),
        (
            "PUT",
            {"x": {"columns": ["a", "a"], "data": [[1, 2]]}, "orient": "split"},
            400,
            "duplicate columns 'a'",
        ),
        (
            "PUT",
            {"x": {"columns": ["a"], "index": [[1]], "data": [[1]]}, "orient": "split"},
            400,
            "labels must be",
        ),
        ("PUT", {"x": [[1, 2], [3]], "orient": "values"}, 400, "differ in length"),
        ("POST", {"x": {"a": {"0": 1}}}, 400, "model-key"),
        ("POST", {"x": {"a": {"0": 1}}, "model-key": "missing"}, 404, "missing"),
        ("POST", {"x": {"a": {"0": 1}}, "model-key": 7}, 400, "model-key"),
        ("PATCH", {"x": {"a": {"0": 1}}}, 405, "PATCH"),
        ("DELETE", {}, 400, "model-key"),
        ("DELETE", {"model-key": "missing"}, 404, "missing"),
    ],
)
def test_bad_requests_get_their_code_and_change_nothing(client, method, body, status, needle):
    """Each malformed request gets its status code, a message naming the problem, no effect."""
    response = client.simulate_request(method, "/linreg", json=body)
    assert response.status_code == status, response.json
    assert set(response.json) >= {"title", "description"}
    assert needle in response.json["description"]
    assert _versions(client, "linreg") == []


def test_unknown_model_is_404_before_parameters(client):
    """An unknown model is a 404 on every verb, even with a malformed body."""
    for method in ("GET", "PUT", "POST", "PATCH", "DELETE"):
        response = client.simulate_request(
            method, "/nope", body="{bad", content_type="application/json"
        )
        assert response.status_code == 404
        assert "nope" in response.json["description"]


def test_patch_without_update_is_405_with_allow(client):
    """PATCH on a model without update answers 405 and lists the verbs it takes."""
    response = client.simulate_patch("/linreg", json={"x": "{}", "model-key": "k"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT, POST, DELETE"


def test_every_operation_has_one_verb_and_back():
    """The http map covers exactly the service's operations, in Allow order, both ways."""
    verbs = verbs_of(OPERATIONS)
    assert verbs == ["GET", "PUT", "POST", "PATCH", "DELETE"]
    assert [operation_of(verb) for verb in verbs] == list(OPERATIONS)


def test_options_lists_the_models_own_verbs(client):
    """OPTIONS answers the same Allow list as a 405 would, per model."""
    assert client.simulate_options("/linreg").headers["allow"] == "GET, PUT, POST, DELETE"
    assert "PATCH" in client.simulate_options("/sgd").headers["allow"]
    assert client.simulate_options("/nope").status_code == 404


def test_blank_model_key_is_a_400(client):
    """`?model-key=` with no value is a missing key, not a request for the listing."""
    response = client.simulate_get("/linreg", query_string="model-key=")
    assert response.status_code == 400 and "model-key" in response.json["description"]


def test_patch_conflicts(client):
    """PATCH is 404 for an unknown key and 409 (status RUNNING) while a version trains."""
    x, y = regression()
    body = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
    assert client.simulate_patch("/sgd", json={**body, "model-key": "nope"}).status_code == 404
    key, done = train(client, "sgd", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    request(client, "PUT", "sgd", json=fit_body(x, y, retrain=True))
    response = client.simulate_patch("/sgd", json={**body, "model-key": key})
    if response.status_code == 409:
        assert response.json["status"] == "RUNNING"
    else:  # the retrain already finished: the update is accepted as version 3
        assert response.status_code == 202 and response.json["version"] == 3


def test_predict_before_finish_is_409_running(client):
    """POST on a key whose only version is RUNNING is a 409 naming RUNNING."""
    x, y = regression()
    started = request(client, "PUT", "slow", json=fit_body(x, y, algkwargs={"seconds": 1.0}))
    key = started.json["model-key"]
    response = predict(client, "slow", key, x)
    assert response.status_code == 409 and response.json["status"] == "RUNNING"
    settled(client, "slow", key)


def test_wrong_columns_are_422_naming_them(client):
    """Predict input with other columns is a 422 listing missing and unexpected columns."""
    x, y = classification()
    key, done = train(client, "logreg", x, y, expect=(200, 202))
    assert done["status"] == "FINISHED", done
    wrong = x.rename(columns={"c": "z"})
    response = predict(client, "logreg", key, wrong)
    assert response.status_code == 422
    assert response.json["missing"] == ["c"] and response.json["unexpected"] == ["z"]
    assert "'c'" in response.json["description"] and "'z'" in response.json["description"]
    text = x.assign(a="text")
    response = predict(client, "logreg", key, text)
    assert response.status_code == 422 and "'a'" in response.json["description"]


def test_body_limit_is_413(client):
    """A body above max_body_bytes is refused with 413 and nothing is stored."""
    x = pd.DataFrame({"a": np.arange(200_000, dtype=float)})
    response = client.simulate_put("/linreg", json={"x": x.to_json()})
    assert response.status_code == 413
    assert "limit" in response.json["description"]
    assert _versions(client, "linreg") == []


def test_non_json_body_is_415(client):
    """A body that is not JSON by its media type is a 415."""
    response = client.simulate_put("/linreg", body="x=1", content_type="text/plain")
    assert response.status_code == 415


def test_malformed_json_and_non_object_bodies_are_400(client):
    """Unparseable JSON and JSON that is not an object are 400s naming the problem."""
    bad = client.simulate_put("/linreg", body="{oops", content_type="application/json")
    assert bad.status_code == 400 and "not valid JSON" in bad.json["description"]
    array = client.simulate_put("/linreg", body="[1, 2]", content_type="application/json")
    assert array.status_code == 400 and "JSON object" in array.json["description"]


def test_service_endpoints(client):
    """/health is alive, /ready checks the store, /models lists models and their verbs."""
    assert client.simulate_get("/health").json == {"status": "ok"}
    assert client.simulate_get("/ready").json == {"status": "ready"}
    models = {m["model"]: m for m in client.simulate_get("/models").json["models"]}
    assert set(models) == set(registry().names())
    assert "PATCH" in models["sgd"]["verbs"] and models["sgd"]["update"]
    assert "PATCH" not in models["linreg"]["verbs"]


def test_ready_is_503_when_store_is_unreachable(tmp_path):
    """/ready answers 503 when the database cannot be opened."""
    app = create_app(registry(), SQLStore(f"sqlite:///{tmp_path}/missing-dir/models.db"))
    try:
        response = falcon.testing.TestClient(app).simulate_get("/ready")
        assert response.status_code == 503 and response.json["title"] == "Store unavailable"
    finally:
        app.close()


def test_unknown_route_has_error_body(client):
    """A path outside the API still answers with the JSON error shape."""
    response = client.simulate_get("/a/b/c")
    assert response.status_code == 404
    assert set(response.json) == {"title", "description"}


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 2**70])
def test_integers_beyond_64_bits_are_a_400_not_a_silent_float(client, number):
    """An integer no 64-bit type holds would become another number as a float: refused,
    in the JSON value and in pandas-JSON text, and nothing is stored."""
    x = {"a": {"0": 1.0, "1": 2.0, "2": 3.0}}
    for y in ({"0": number, "1": 1, "2": 2}, f'{{"0":{number},"1":1,"2":2}}'):
        response = client.simulate_put("/linreg", json={"x": x, "y": y})
        assert response.status_code == 400, response.text
        assert (
            f"the integer {number}, which does not fit in 64 bits" in response.json["description"]
        )
    assert client.simulate_get("/linreg").json["keys"] == []


def test_integer_labels_beyond_int64_are_served(client):
    """Column labels from 2**63 to 2**64-1 (uint64) train and predict instead of a 500."""
    x = {
        "columns": [2**63, 2**64 - 1],
        "index": [0, 1, 2],
        "data": [[1.0, 2.0], [2.0, 1.0], [3.0, 5.0]],
    }
    y = {"name": "t", "index": [0, 1, 2], "data": [1.0, 2.0, 4.0]}
    response = client.simulate_put("/linreg", json={"x": x, "y": y, "orient": "split"})
    assert response.status_code == 202, response.text
    key = response.json["model-key"]
    assert settled(client, "linreg", key)["status"] == "FINISHED"
    answer = client.simulate_post("/linreg", json={"x": x, "orient": "split", "model-key": key})
    assert answer.status_code == 200, answer.text
    expected = LinearRegression().fit(np.array(x["data"]), y["data"]).predict(np.array(x["data"]))
    np.testing.assert_allclose([row[0] for row in answer.json["y"]["data"]], expected)
