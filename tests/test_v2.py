"""The Open Inference Protocol (V2) in process: metadata and readiness, inference from a
`[rows, columns]` tensor and from one tensor per column (the pandas codec) in every datatype,
outputs per method, pinned versions and aliases, Triton's binary tensors both ways, and
`{"error"}` answers that change nothing. Answers are checked against the protocol's schemas
(tests/data/open_inference_rest.json) and against the estimator's own predictions."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlserver import ModelWrapper, Registry, wrap_estimator
from mlserver.http.auth import hash_token
from support import classification, in_process, settled, train

SCHEMAS = json.loads((Path(__file__).parent / "data" / "open_inference_rest.json").read_text())
HEADER = "Inference-Header-Content-Length"


def valid(body: dict, schema: str) -> dict:
    """`body`, once it is asserted to follow the protocol's `schema`."""
    jsonschema.validate(body, {**SCHEMAS, "$ref": f"#/$defs/{schema}"})
    return body


class Colours(ModelWrapper):
    """A pipeline with a string column, for BYTES tensors."""

    name = "colours"

    def make_model(self, **modkwargs):
        encode = make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["colour"]), remainder="passthrough"
        )
        return make_pipeline(encode, LogisticRegression())


def models() -> Registry:
    return Registry(
        [
            wrap_estimator(LogisticRegression, "logreg"),
            wrap_estimator(KMeans, "kmeans"),
            wrap_estimator(HistGradientBoostingClassifier, "hgb"),
            Colours(),
        ]
    )


def colours(rows: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(
        {"colour": rng.choice(["red", "green", "blue"], rows), "size": rng.normal(size=rows)}
    )
    return x, pd.Series((x["colour"] == "red") | (x["size"] > 1), name="keep")


def infer(client, name: str, body: dict, version: str | None = None, **options):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    return client.simulate_post(path, body=orjson.dumps(body), **options)


def tensor(x: pd.DataFrame, name: str = "x", datatype: str = "FP64") -> dict:
    return {
        "name": name,
        "shape": list(x.shape),
        "datatype": datatype,
        "data": x.to_numpy().ravel().tolist(),
    }


def columns(x: pd.DataFrame, datatype: str = "FP64", shape: str = "1d") -> list[dict]:
    found = []
    for column in x.columns:
        values = x[column].tolist()
        dims = [len(values)] if shape == "1d" else [len(values), 1]
        found.append({"name": str(column), "shape": dims, "datatype": datatype, "data": values})
    return found


def output(body: dict, name: str) -> np.ndarray:
    entry = next(o for o in body["outputs"] if o["name"] == name)
    return np.array(entry["data"]).reshape(entry["shape"])


@pytest.fixture
def served(store_url):
    """A client of an app on each backend, logreg trained on classification()."""
    x, y = classification()
    with in_process(models(), store_url) as client:
        key, state = train(client, "logreg", x, y, name="v2")
        assert state["status"] == "FINISHED"
        yield client, f"logreg:{key}", x, LogisticRegression().fit(x, y)


def test_server_metadata_health_and_readiness(served):
    client, name, _, _ = served
    for path in ("/v2", "/v2/"):
        body = valid(client.simulate_get(path).json, "metadata_server_response")
        assert body["name"] == "mlserver" and "binary_tensor_data" in body["extensions"]
    assert client.simulate_get("/v2/health/live").status_code == 200
    assert client.simulate_get("/v2/health/ready").status_code == 200
    ready = client.simulate_get(f"/v2/models/{name}/ready")
    assert ready.status_code == 200 and ready.json["ready"] is True
    assert client.simulate_get(f"/v2/models/{name}/versions/1/ready").status_code == 200
    assert client.simulate_get(f"/v2/models/{name}/versions/9/ready").status_code == 404
    missing = client.simulate_get("/v2/models/logreg:nokey/ready")
    assert missing.status_code == 404 and valid(missing.json, "error_response")


def test_model_metadata_describes_the_training_schema_and_the_methods(served):
    client, name, x, _ = served
    body = valid(client.simulate_get(f"/v2/models/{name}").json, "metadata_model_response")
    assert body["name"] == name and body["versions"] == ["1"]
    per_column = [{"name": c, "datatype": "FP64", "shape": [-1, 1]} for c in x.columns]
    assert body["inputs"][:-1] == per_column
    assert body["inputs"][-1]["shape"] == [-1, x.shape[1]]  # the tensor form
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"predict", "predict_proba", "decision_function"}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"]["shape"] == [-1, 2]
    assert body["parameters"]["aliases"] == {"served": 1}
    pinned = client.simulate_get(f"/v2/models/{name}/versions/served")
    assert pinned.json["parameters"]["version"] == "1"


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16"])
def test_a_tensor_of_the_columns_in_order_answers_as_the_estimator(served, datatype):
    client, name, x, model = served
    body = {"inputs": [tensor(x, datatype=datatype)], "outputs": [{"name": "predict"}]}
    body["outputs"].append({"name": "predict_proba"})
    body["id"] = "request-1"
    answer = infer(client, name, body)
    assert answer.status_code == 200, answer.text
    got = valid(answer.json, "inference_response")
    assert (got["model_name"], got["model_version"], got["id"]) == (name, "1", "request-1")
    rows = x.to_numpy().astype(np.dtype(datatype.replace("FP", "float").replace("16", "16")))
    expected = pd.DataFrame(rows.astype(np.float64), columns=x.columns)
    np.testing.assert_array_equal(output(got, "predict"), model.predict(expected))
    proba = output(got, "predict_proba")
    if datatype == "FP64":  # exact: float64 in, float64 JSON out
        np.testing.assert_array_equal(proba, model.predict_proba(expected))
    else:
        np.testing.assert_allclose(proba, model.predict_proba(expected), rtol=1e-12)


@pytest.mark.parametrize("shape", ["1d", "2d"])
def test_one_tensor_per_column_in_any_order_is_the_pandas_codec(served, shape):
    client, name, x, model = served
    inputs = columns(x, shape=shape)[::-1]
    answer = infer(client, name, {"inputs": inputs, "parameters": {"content_type": "pd"}})
    assert answer.status_code == 200, answer.text
    got = valid(answer.json, "inference_response")
    assert [o["name"] for o in got["outputs"]] == ["predict"]  # the default output
    np.testing.assert_array_equal(output(got, "predict"), model.predict(x))
    # without content_type: several inputs are columns too
    again = infer(client, name, {"inputs": inputs})
    assert again.json["outputs"] == got["outputs"]


def test_integer_bool_and_string_tensors(store_url):
    x, y = colours()
    with in_process(models(), store_url) as client:
        key, state = train(client, "colours", x, y)
        assert state["status"] == "FINISHED", state
        model = Colours().make_model().fit(x, y)
        inputs = [
            {
                "name": "colour",
                "shape": [len(x)],
                "datatype": "BYTES",
                "data": x["colour"].tolist(),
            },
            {"name": "size", "shape": [len(x), 1], "datatype": "FP32", "data": x["size"].tolist()},
        ]
        answer = infer(client, f"colours:{key}", {"inputs": inputs})
        assert answer.status_code == 200, answer.text
        rounded = x.assign(size=x["size"].astype(np.float32).astype(np.float64))
        labels = output(valid(answer.json, "inference_response"), "predict")
        assert labels.tolist() == model.predict(rounded).tolist()
        assert answer.json["outputs"][0]["datatype"] == "BOOL"

        # integers and booleans into a float model: converted exactly
        logreg_x, logreg_y = classification()
        integers = (logreg_x * 10).round().astype(np.int64)
        key, _ = train(client, "logreg", integers, logreg_y)
        fitted = LogisticRegression().fit(integers, logreg_y)
        for datatype in ("INT64", "INT32", "INT8", "UINT8", "UINT64"):
            data = integers.abs() if datatype.startswith("U") else integers
            answer = infer(client, f"logreg:{key}", {"inputs": [tensor(data, datatype=datatype)]})
            assert answer.status_code == 200, (datatype, answer.text)
            expected = fitted.predict(data.astype(np.float64))
            np.testing.assert_array_equal(output(answer.json, "predict"), expected)
        flags = logreg_x > 0
        answer = infer(client, f"logreg:{key}", {"inputs": [tensor(flags, datatype="BOOL")]})
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(
            output(answer.json, "predict"), fitted.predict(flags.astype(np.float64))
        )


def test_null_is_a_missing_value_where_the_model_takes_one(store_url):
    x, y = classification()
    holes = x.copy()
    holes.iloc[::4, 0] = np.nan
    with in_process(models(), store_url) as client:
        key, _ = train(client, "hgb", holes, y)
        model = HistGradientBoostingClassifier().fit(holes, y)
        body = tensor(holes)
        body["data"] = [None if v != v else v for v in body["data"]]
        answer = infer(client, f"hgb:{key}", {"inputs": [body]})
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(output(answer.json, "predict"), model.predict(holes))
        key, _ = train(client, "logreg", x, y)
        refused = infer(client, f"logreg:{key}", {"inputs": [body]})
        assert refused.status_code == 422 and valid(refused.json, "error_response")


def test_every_output_method_and_a_transformer(store_url):
    x, y = classification()
    with in_process(models(), store_url) as client:
        key, _ = train(client, "kmeans", x, None, modkwargs={"n_clusters": 3, "random_state": 0})
        model = KMeans(n_clusters=3, random_state=0).fit(x)
        names = [{"name": "predict"}, {"name": "transform"}]
        answer = infer(client, f"kmeans:{key}", {"inputs": [tensor(x)], "outputs": names})
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(output(answer.json, "predict"), model.predict(x))
        np.testing.assert_array_equal(output(answer.json, "transform"), model.transform(x))
        key, _ = train(client, "logreg", x, y)
        decision = infer(
            client,
            f"logreg:{key}",
            {"inputs": [tensor(x)], "outputs": [{"name": "decision_function"}]},
        )
        expected = LogisticRegression().fit(x, y).decision_function(x)
        np.testing.assert_array_equal(output(decision.json, "decision_function"), expected)


def test_versions_and_aliases_pick_what_answers(served):
    client, name, x, first = served
    key = name.split(":")[1]
    x2, y2 = classification(seed=5)
    body = {"x": x2.to_json(orient="split"), "y": y2.to_json(orient="split"), "orient": "split"}
    retrained = client.simulate_put(
        "/logreg", json={**body, "name": "v2", "retrain": True, "promote": "never"}
    )
    assert retrained.status_code == 202
    assert settled(client, "logreg", key)["status"] == "FINISHED"
    second = LogisticRegression().fit(x2, y2)
    client.simulate_put(f"/logreg/{key}/aliases/champion", json={"version": 2})
    request = {"inputs": [tensor(x)], "outputs": [{"name": "predict_proba"}]}
    for version, model_ in ((None, first), ("1", first), ("2", second), ("champion", second)):
        answer = infer(client, name, request, version)
        assert answer.status_code == 200, answer.text
        assert answer.json["model_version"] == ("1" if model_ is first else "2")
        np.testing.assert_array_equal(output(answer.json, "predict_proba"), model_.predict_proba(x))
    meta = client.simulate_get(f"/v2/models/{name}").json
    assert meta["versions"] == ["1", "2"]
    assert infer(client, name, request, "nope").status_code == 404
    assert infer(client, name, request, "7").status_code == 404


def _binary_request(inputs: list[tuple[str, str, np.ndarray]], outputs: list[str]) -> bytes:
    chunks, entries = [], []
    for name, datatype, values in inputs:
        if datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values.ravel())
        else:
            raw = np.ascontiguousarray(values).tobytes()
        chunks.append(raw)
        entries.append(
            {
                "name": name,
                "shape": list(values.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    head = orjson.dumps(
        {
            "inputs": entries,
            "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
        }
    )
    return head, b"".join([head, *chunks])


def test_binary_tensors_in_requests_and_answers(served):
    client, name, x, model = served
    head, body = _binary_request([("x", "FP64", x.to_numpy())], ["predict", "predict_proba"])
    answer = client.simulate_post(
        f"/v2/models/{name}/infer",
        body=body,
        headers={HEADER: str(len(head)), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers[HEADER.lower()])
    meta = orjson.loads(answer.content[:length])
    offset = length
    found = {}
    for entry in meta["outputs"]:
        assert "data" not in entry
        size = entry["parameters"]["binary_data_size"]
        dtype = {"INT64": "<i8", "FP64": "<f8"}[entry["datatype"]]
        raw = answer.content[offset : offset + size]
        found[entry["name"]] = np.frombuffer(raw, dtype=dtype).reshape(entry["shape"])
        offset += size
    assert offset == len(answer.content)
    np.testing.assert_array_equal(found["predict"], model.predict(x))
    np.testing.assert_array_equal(found["predict_proba"], model.predict_proba(x))
    # binary_data_output asks for every output as binary data; BYTES inputs as binary too
    head = orjson.dumps({"inputs": [tensor(x)], "parameters": {"binary_data_output": True}})
    answer = client.simulate_post(f"/v2/models/{name}/infer", body=head)
    assert HEADER.lower() in answer.headers


def test_binary_bytes_tensors(store_url):
    x, y = colours()
    with in_process(models(), store_url) as client:
        key, _ = train(client, "colours", x, y)
        model = Colours().make_model().fit(x, y)
        inputs = [
            ("colour", "BYTES", x["colour"].to_numpy()),
            ("size", "FP64", x["size"].to_numpy()),
        ]
        head, body = _binary_request(inputs, [])
        meta = orjson.loads(head)
        del meta["outputs"]  # the default output, as JSON
        head2 = orjson.dumps(meta)
        answer = client.simulate_post(
            f"/v2/models/colours:{key}/infer",
            body=head2 + body[len(head) :],
            headers={HEADER: str(len(head2))},
        )
        assert answer.status_code == 200, answer.text
        assert output(answer.json, "predict").tolist() == model.predict(x).tolist()


# ruff: noqa: E501 - the bad requests below read best one to a line
@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (b'{"inputs": []}', 400, "non-empty list"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP99", "data": [1]}]}', 400, "datatype"),
        (b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2]}]}', 400, "elements"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": ["a", "b", "c"]}]}', 400, "numbers"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT8", "data": [1, 2, 300]}]}', 400, "range"),
        (b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}', 422, "trained on 3"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}', 422, "missing inputs"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], "outputs": [{"name": "colour"}]}', 400, "unknown outputs"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], "outputs": [{"name": "transform"}]}', 400, "transform"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], "color": 1}', 400, "unknown fields"),
        (b'{"inputs": [{"name": "x", "shape": [1, 2, 3, 4], "datatype": "FP64", "data": [1]}]}', 400, "dimensions"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["1", "2", "3"]}]}', 422, "BYTES"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], "outputs": [{"name": "predict"}, {"name": "predict"}]}', 400, "unique"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "parameters": {"binary_data_size": 24}}]}', 400, "past the end"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_errors_and_change_nothing(served, body, status, says):
    client, name, _, _ = served
    before = client.simulate_get("/logreg/" + name.split(":")[1] + "/versions").json
    answer = client.simulate_post(f"/v2/models/{name}/infer", body=body)
    assert answer.status_code == status, answer.text
    assert says in valid(answer.json, "error_response")["error"]
    assert client.simulate_get("/logreg/" + name.split(":")[1] + "/versions").json == before


def test_names_headers_and_media_types_that_are_refused(served):
    client, name, x, _ = served
    request = {"inputs": [tensor(x)]}
    assert infer(client, "logreg", request).status_code == 404  # no :key
    assert infer(client, "nope:key", request).status_code == 404
    bad_length = infer(client, name, request, headers={HEADER: "99999999"})
    assert bad_length.status_code == 400 and HEADER in bad_length.json["error"]
    text = infer(client, name, request, headers={"Content-Type": "text/csv"})
    assert text.status_code == 415 and valid(text.json, "error_response")


def test_the_body_limit_applies(store_url):
    x, y = classification()
    with in_process(models(), store_url) as client:
        key, _ = train(client, "logreg", x, y)
    with in_process(models(), store_url, max_body_bytes=500) as client:
        large = infer(client, f"logreg:{key}", {"inputs": [tensor(x)]})
        assert large.status_code == 413 and "max_body_bytes" in large.json["error"]


def test_scopes_are_those_of_post_and_errors_keep_the_v2_shape(sqlite_url):
    x, y = classification()
    with in_process(models(), sqlite_url) as client:
        key, _ = train(client, "logreg", x, y)
    tokens = {hash_token("p"): ["predict"], hash_token("t"): ["train"]}
    with in_process(models(), sqlite_url, tokens=tokens) as client:
        name = f"logreg:{key}"
        predictor = {"Authorization": "Bearer p"}
        trainer = {"Authorization": "Bearer t"}
        assert client.simulate_get("/v2/health/live").status_code == 200  # open
        assert client.simulate_get("/v2").status_code == 200
        none = infer(client, name, {"inputs": [tensor(x)]})
        assert none.status_code == 401 and valid(none.json, "error_response")
        denied = infer(client, name, {"inputs": [tensor(x)]}, headers=trainer)
        assert denied.status_code == 403 and "predict" in denied.json["error"]
        allowed = infer(client, name, {"inputs": [tensor(x)]}, headers=predictor)
        assert allowed.status_code == 200, allowed.text
        assert client.simulate_get(f"/v2/models/{name}", headers=trainer).status_code == 200


def test_v2_requests_have_their_own_route_label_in_the_metrics(served):
    client, name, x, _ = served
    assert infer(client, name, {"inputs": [tensor(x)]}).status_code == 200
    text = client.simulate_get("/metrics").text
    labels = 'method="POST",model="logreg",route="/v2/models/{name}/infer",status="200"'
    assert f"mlserver_http_requests_total{{{labels}}} 1.0" in text


def test_large_json_tensors_read_straight_into_arrays_answer_the_same(store_url):
    """Above 64 KiB the body is read by simdjson (float data straight into an array): the
    answers equal the estimator's, nested data and nulls included."""
    rng = np.random.default_rng(4)
    # NOTE: rounded, so that the training JSON (pandas' to_json: 10 digits) keeps them exactly
    x = pd.DataFrame(rng.normal(size=(5000, 4)).round(6), columns=["p", "q", "r", "s"])
    y = (x["p"] + x["q"] > 0).astype(int)
    holes = x.copy()
    holes.iloc[::7, 1] = np.nan
    with in_process(models(), store_url) as client:
        key, _ = train(client, "logreg", x, y)
        hgb, _ = train(client, "hgb", holes, y)
        model = LogisticRegression().fit(x, y)
        flat = tensor(x)
        nested = {**flat, "data": x.to_numpy().tolist()}
        for body in (flat, nested, {**flat, "datatype": "FP32"}):
            assert len(orjson.dumps(body)) > 64 * 1024
            answer = infer(
                client, f"logreg:{key}", {"inputs": [body], "outputs": [{"name": "predict_proba"}]}
            )
            assert answer.status_code == 200, answer.text
            rows = x.astype(np.float32).astype(np.float64) if body["datatype"] == "FP32" else x
            np.testing.assert_array_equal(
                output(answer.json, "predict_proba"), model.predict_proba(rows)
            )
        gaps = tensor(holes)
        gaps["data"] = [None if v != v else v for v in gaps["data"]]
        answer = infer(client, f"hgb:{hgb}", {"inputs": [gaps]})
        expected = HistGradientBoostingClassifier().fit(holes, y).predict(holes)
        np.testing.assert_array_equal(output(answer.json, "predict"), expected)
        short = {**flat, "shape": [5001, 4]}
        assert infer(client, f"logreg:{key}", {"inputs": [short]}).status_code == 400


def test_integer_tensors_are_read_exactly_or_refused(served):
    """numpy reads an integer beyond int64 as a float: integer data is checked value by value."""
    client, name, _, _ = served
    cases = {
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [9223372036854775808, 2, 3]}]}': "range",
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1.5, 2, 3]}]}': "whole numbers",
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [true, 2, 3]}]}': "numbers",
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT8", "data": [-1, 2, 3]}]}': "range",
    }  # fmt: skip
    for body, says in cases.items():
        answer = client.simulate_post(f"/v2/models/{name}/infer", body=body)
        assert answer.status_code == 400 and says in answer.json["error"], answer.text
    exact = (
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1.0, 2, 3]}]}'
    )
    assert client.simulate_post(f"/v2/models/{name}/infer", body=exact).status_code == 200
