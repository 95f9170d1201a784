"""GET /openapi.json: a valid OpenAPI 3.1 document that matches what the server answers."""

from __future__ import annotations

import copy
import io

import jsonschema
import pyarrow as pa
import pyarrow.ipc
import pytest
from openapi_spec_validator import validate

from mlserver import ModelWrapper
from mlserver.http.body import ARROW_STREAM, BULK_MEDIA
from mlserver.http.openapi import openapi
from mlserver.http.parameters import PARAMETERS
from support import classification, in_process, registry, settled

VERBS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def client(sqlite_url):
    with in_process(registry(), sqlite_url, max_body_bytes=100_000) as client:
        yield client


@pytest.fixture
def spec(client):
    return client.simulate_get("/openapi.json").json


def conforms(spec: dict, path: str, method: str, response) -> None:
    """Assert the response's status is documented for the operation and its body matches."""
    operation = spec["paths"][path][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method} {path} answered undocumented {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    # Resolve "#/components/..." references against the document itself.
    validator = jsonschema.Draft202012Validator({**schema, "components": spec["components"]})
    validator.validate(response.json)
    for header in documented.get("headers", {}):
        assert header.lower() in response.headers


def test_document_is_valid_openapi_31(spec):
    """The document passes openapi-spec-validator as OpenAPI 3.1."""
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_model_has_a_path_and_patch_only_where_supported(spec):
    """Each registered model is a path; PATCH appears exactly on models with update."""
    models = {w.name: w for w in registry()}
    paths = {p.strip("/"): ops for p, ops in spec["paths"].items()}
    assert set(models) <= set(paths)
    for name, wrapper in models.items():
        assert {"get", "put", "post", "delete"} <= set(paths[name])
        assert ("patch" in paths[name]) is wrapper.supports_update


def test_request_schemas_reject_unknown_parameters_like_the_server(spec, client):
    """A body the schema refuses for an unknown member is also refused by the server."""
    fit = {**spec["components"]["schemas"]["FitRequest"], "components": spec["components"]}
    body = {"x": {"a": {"0": 1}}, "colour": "red"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(fit).validate(body)
    assert client.simulate_put("/linreg", json=body).status_code == 400


def test_responses_conform_to_the_document(client, spec):
    """Every answer of a full session (successes and errors) matches the documented schema."""
    x, y = classification()
    body = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}

    def check(method, path, expected, **kwargs):
        response = client.simulate_request(method, path, **kwargs)
        assert response.status_code == expected, response.json
        conforms(spec, path, method, response)
        return response

    for path in ("/health", "/ready", "/models"):
        check("GET", path, 200)
    key = check("PUT", "/logreg", 202, json=body).json["model-key"]
    assert settled(client, "logreg", key)["status"] == "FINISHED"
    check("PUT", "/logreg", 200, json=body)
    check("GET", "/logreg", 200, params={"model-key": key})
    check("GET", "/logreg", 200)
    predict = {"x": x.to_json(orient="split"), "orient": "split", "model-key": key}
    check("POST", "/logreg", 200, json=predict)
    wrong = {**predict, "x": x.rename(columns={"a": "z"}).to_json(orient="split")}
    check("POST", "/logreg", 422, json=wrong)
    check("POST", "/logreg", 404, json={**predict, "model-key": "nope"})
    check("POST", "/logreg", 400, json={"x": predict["x"]})
    check("PUT", "/logreg", 400, json={"x": "{bad"})
    check("PUT", "/logreg", 413, json={"x": "0" * 200_000})
    check("PUT", "/logreg", 415, body="x=1", content_type="text/plain")
    slow = check(
        "PUT", "/slow", 202, json={**body, "algkwargs": {"seconds": 0.5}, "name": "s"}
    ).json["model-key"]
    check("POST", "/slow", 409, json={**predict, "model-key": slow})
    sgd = {**body, "modkwargs": {"random_state": 0}}
    sgd_key = check("PUT", "/slow-sgd", 202, json=sgd).json["model-key"]
    assert settled(client, "slow-sgd", sgd_key)["status"] == "FINISHED"
    update = {**{k: body[k] for k in ("x", "y", "orient")}, "model-key": sgd_key}
    check("PATCH", "/slow-sgd", 202, json=update)
    check("PATCH", "/slow-sgd", 409, json=update)  # the first update sleeps for 0.5 s
    check("DELETE", "/logreg", 200, params={"model-key": key})
    check("DELETE", "/logreg", 404, json={"model-key": key})
    check("GET", "/logreg", 404, params={"model-key": key})
    settled(client, "slow", slow)


def test_undocumented_verbs_are_405(client, spec):
    """Where the document has no PATCH, the server answers 405 with an Allow header."""
    assert "patch" not in spec["paths"]["/linreg"]
    response = client.simulate_patch("/linreg", json={"x": "{}", "model-key": "k"})
    assert response.status_code == 405 and response.headers["allow"]


def _model_operations(spec: dict):
    """(verb, operation) of every `/{model}` operation in the document (not the routes of a
    key's history, `/{model}/{key}/...`)."""
    service = {"/health", "/ready", "/models", "/openapi.json", "/metrics", "/v2"}
    for path, operations in spec["paths"].items():
        if path not in service and path.count("/") == 1:
            for verb, operation in operations.items():
                yield verb.upper(), operation


def test_table_bodies_are_documented_where_x_is_taken(spec):
    """PUT, POST and PATCH document each CSV, Arrow and Parquet media type as a binary body;
    GET and DELETE document none."""
    seen = set()
    for verb, operation in _model_operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        tables = {media: content[media] for media in content if media != "application/json"}
        if verb in ("PUT", "POST", "PATCH"):
            seen.add(verb)
            assert set(tables) == set(BULK_MEDIA), (verb, sorted(content))
            for media in tables.values():
                assert media["schema"]["format"] == "binary"
        else:
            assert tables == {}, verb
    assert seen == {"PUT", "POST", "PATCH"}


def test_target_is_a_query_parameter_of_put_and_patch_only(spec):
    """`target` is documented in the query string of PUT and PATCH, nowhere else."""
    for verb, operation in _model_operations(spec):
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert ("target" in query) is (verb in ("PUT", "PATCH")), verb
    for name in ("FitRequest", "PredictRequest", "UpdateRequest", "DeleteRequest"):
        assert "target" not in spec["components"]["schemas"][name]["properties"]


def test_the_arrow_answer_of_post_is_documented_and_served(client, spec):
    """POST documents an Arrow stream answer beside JSON, and a POST that asks for Arrow
    gets that media type with the documented status."""
    for verb, operation in _model_operations(spec):
        if verb == "POST":
            assert {"application/json", ARROW_STREAM} <= set(
                operation["responses"]["200"]["content"]
            )
    x, y = classification()
    body = {"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"}
    key = client.simulate_put("/logreg", json=body).json["model-key"]
    assert settled(client, "logreg", key)["status"] == "FINISHED"
    answer = client.simulate_post(
        "/logreg",
        json={"x": body["x"], "orient": "split", "model-key": key},
        headers={"Accept": ARROW_STREAM},
    )
    documented = spec["paths"]["/logreg"]["post"]["responses"][str(answer.status_code)]
    assert answer.headers["content-type"] in documented["content"]
    assert pa.ipc.open_stream(io.BytesIO(answer.content)).read_all().num_rows == len(x)


def test_the_method_enum_is_the_wrappers_own_tuple(spec):
    """The documented prediction methods are ModelWrapper.methods, not a copy of them."""
    method = spec["components"]["schemas"]["Method"]
    assert method["enum"] == list(ModelWrapper.methods)
    assert (
        "$ref"
        in spec["components"]["schemas"]["PredictRequest"]["properties"]["method"]["anyOf"][0]
    )


def test_every_table_parameter_is_documented_for_exactly_its_verbs(spec):
    """Each name of the parameter table (aliases too) appears, in the query string or the JSON
    body, on exactly the verbs the table gives it, and no other name does."""
    for verb, operation in _model_operations(spec):
        expected = {name for p in PARAMETERS if verb in p.verbs for name in p.names}
        query = {p["name"] for p in operation.get("parameters", [])}
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        members = set()
        if body is not None:
            ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
            members = set(spec["components"]["schemas"][ref]["properties"])
        assert query | members == expected, verb


def _clear(value) -> None:
    """Empty every dict and list in `value`, however deep."""
    children = list(value.values()) if isinstance(value, dict) else list(value)
    for child in children:
        if isinstance(child, (dict, list)):
            _clear(child)
    value.clear()


@pytest.mark.parametrize("secured", [False, True])
def test_each_document_is_built_fresh(client, secured):
    """Mutating every member of one document leaves the next one as it was: nothing is shared
    between calls."""
    service = client.app.service
    before = copy.deepcopy(openapi(service, secured=secured))
    _clear(openapi(service, secured=secured))
    assert openapi(service, secured=secured) == before
