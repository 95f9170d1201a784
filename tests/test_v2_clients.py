"""Real V2 clients, unmodified, against `ml-server serve` behind waitress: Triton's
`tritonclient[http]` with its defaults (binary tensors both ways) and with JSON tensors, and
the generated `open-inference-openapi` client; tensor and pandas-codec inputs, every output
method, pinned versions and aliases, and refusals that change nothing."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import requests
import tritonclient.http as triton
from open_inference.openapi.client import InferenceRequest, OpenInferenceClient
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from support import ServerProcess, classification, put, settled, train

pytestmark = pytest.mark.slow

CATALOG = "mlserver.catalog:catalog"
MODEL = "logistic-regression"


@pytest.fixture
def server(store_url):
    """The catalog served on each backend, with two versions of one key: v1 served, v2 a
    candidate the alias `champion` names."""
    process = ServerProcess(store_url, target=CATALOG)
    try:
        x, y = classification()
        key, state = train(process, MODEL, x, y, name="v2-clients")
        assert state["status"] == "FINISHED"
        x2, y2 = classification(seed=7)
        put(process, MODEL, x2, y2, name="v2-clients", retrain=True, promote="never")
        assert settled(process, MODEL, key)["version"] == 2
        moved = requests.put(
            f"{process.url}/{MODEL}/{key}/aliases/champion", json={"version": 2}, timeout=10
        )
        assert moved.status_code == 200
        models = LogisticRegression().fit(x, y), LogisticRegression().fit(x2, y2)
        yield process, f"{MODEL}:{key}", x, models
    finally:
        process.stop()


def _tensor(x, binary: bool) -> triton.InferInput:
    values = x.to_numpy()
    given = triton.InferInput("x", list(values.shape), "FP64")
    given.set_data_from_numpy(values, binary_data=binary)
    return given


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_tensors_versions_aliases_and_every_output(server, binary):
    process, name, x, (first, second) = server
    client = triton.InferenceServerClient(process.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(name, "2")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata(name)
        assert meta["versions"] == ["1", "2"]
        assert {o["name"] for o in meta["outputs"]} == {
            "predict",
            "predict_proba",
            "decision_function",
        }
        rows = _tensor(x, binary)
        # the default output, binary unless outputs are asked for as JSON
        answer = client.infer(name, [rows])
        np.testing.assert_array_equal(answer.as_numpy("predict"), first.predict(x))
        outputs = [
            triton.InferRequestedOutput(method, binary_data=binary)
            for method in ("predict", "predict_proba", "decision_function")
        ]
        for version, model in (("", first), ("1", first), ("2", second), ("champion", second)):
            answer = client.infer(name, [rows], model_version=version, outputs=outputs)
            assert answer.get_response()["model_version"] == ("1" if model is first else "2")
            np.testing.assert_array_equal(answer.as_numpy("predict"), model.predict(x))
            np.testing.assert_array_equal(answer.as_numpy("predict_proba"), model.predict_proba(x))
            np.testing.assert_array_equal(
                answer.as_numpy("decision_function"), model.decision_function(x)
            )
        # the pandas codec: one FP32 tensor per column
        columns = []
        for column in x.columns:
            values = x[[column]].to_numpy().astype(np.float32)
            given = triton.InferInput(column, list(values.shape), "FP32")
            given.set_data_from_numpy(values, binary_data=binary)
            columns.append(given)
        answer = client.infer(name, columns, parameters={"content_type": "pd"})
        rounded = x.astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(answer.as_numpy("predict"), first.predict(rounded))
        # refusals: 4xx with the server's reason, nothing changed
        wrong = triton.InferInput("x", [len(x), 2], "FP64")
        wrong.set_data_from_numpy(x.to_numpy()[:, :2].copy(), binary_data=binary)
        with pytest.raises(InferenceServerException, match="trained on 3") as refused:
            client.infer(name, [wrong])
        assert refused.value.status() == "422"
        with pytest.raises(InferenceServerException) as unknown:
            client.infer(f"{MODEL}:no-such-key", [rows])
        assert unknown.value.status() == "404"
        assert client.get_model_metadata(name)["versions"] == ["1", "2"]
    finally:
        client.close()


def test_the_open_inference_client(sqlite_url):
    process = ServerProcess(sqlite_url, target=CATALOG)
    try:
        x, y = classification()
        key, _ = train(process, MODEL, x, y)
        model = LogisticRegression().fit(x, y)
        name = f"{MODEL}:{key}"
        connections = httpx.Client(timeout=60)
        client = OpenInferenceClient(base_url=process.url, httpx_client=connections)
        client.check_server_liveness()
        client.check_server_readiness()
        client.check_model_readiness(name)
        client.check_model_version_readiness(name, "1")
        assert client.read_server_metadata().name == "mlserver"
        meta = client.read_model_metadata(name)
        assert [t.name for t in meta.inputs][:3] == list(x.columns)
        tensor = {
            "name": "x",
            "shape": list(x.shape),
            "datatype": "FP64",
            "data": x.to_numpy().ravel().tolist(),
        }
        answer = client.model_infer(
            name,
            request=InferenceRequest(inputs=[tensor], outputs=[{"name": "predict_proba"}]),
        )
        (output,) = answer.outputs
        got = np.array(output.data.__root__).reshape(output.shape)
        np.testing.assert_array_equal(got, model.predict_proba(x))
        per_column = [
            {"name": c, "shape": [len(x)], "datatype": "FP64", "data": x[c].tolist()}
            for c in x.columns
        ]
        request = InferenceRequest(inputs=per_column, parameters={"content_type": "pd"})
        answer = client.model_version_infer(name, "served", request=request)
        assert answer.model_version == "1"
        np.testing.assert_array_equal(answer.outputs[0].data.__root__, model.predict(x))
        bad = {**tensor, "shape": [len(x), 2], "data": x.to_numpy()[:, :2].ravel().tolist()}
        with pytest.raises(Exception, match="trained on 3") as refused:
            client.model_infer(name, request=InferenceRequest(inputs=[bad]))
        assert getattr(refused.value, "status_code", None) == 422
        connections.close()
    finally:
        process.stop()
