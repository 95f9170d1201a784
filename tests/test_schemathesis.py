"""Schemathesis against a real `ml-server serve` process and the document it serves.

Every operation of the server's own `/openapi.json` gets generated requests, valid and invalid
(`MAX_EXAMPLES` each, derandomized so that every run sends the same ones), in each media type
the document gives its body: JSON, and CSV, Arrow and Parquet tables. The server has keys
that finished, failed and are still running, and generation is steered toward them: known
model-keys and `x` frames with the trained columns (as JSON, or encoded as the table the case
sends, with a `target` column on PUT and PATCH) reach the predict and update paths, which
random keys (404) and frames (422) never would.
"""

from __future__ import annotations

import io
import json
from typing import Any

import jsonschema
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlserver.http.body import BULK_MEDIA
from mlserver.http.parameters import verbs_of
from mlserver.service import operations_of
from support import ServerProcess, classification, put, registry, regression, settled

# The fuzzer runs against an `ml-server serve` process.
pytestmark = pytest.mark.slow

# 38 operations of /{model} and the service (8 models with 4 or 5 verbs, 4 service
# routes): ~3,500 requests; with the 48 history operations ~4,000.
MAX_EXAMPLES = 80
#: For the 48 operations of the history and alias routes (6 per model): thin routes over a
#: few store calls, each the same for every model.
HISTORY_EXAMPLES = 10
#: For the operations whose body may also be CSV, Arrow or Parquet (PUT, POST, PATCH): about
#: 40% of their cases are tables, so JSON keeps most of the cases it had alone, at ~15 s more.
TABLE_EXAMPLES = 105
# Models trained on classification() (columns a, b, c); the others on regression() (u, v).
CLASSIFIERS = {"logreg", "kmeans"}
KEY_NAMES = ("model-key", "model_key")


class Server(ServerProcess):
    """The test registry's server, remembering the keys trained on it for the fuzzer."""

    def __init__(self, store_url: str) -> None:
        # Generated fits with a table body and `target` really train; the fuzzer sends more
        # than the default 16 places allow, and it counts the documented busy 503 as an error.
        super().__init__(store_url, "--max-queued-jobs", "100000")
        #: model -> the keys it has (finished, failed or running).
        self.keys: dict[str, list[str]] = {}
        #: model -> the predict methods it offers.
        self.methods: dict[str, list[str]] = {}

    def train(self, model: str, name: str, **params: Any) -> str:
        """Start a new training job (a 202) named `name`, and remember its key."""
        x, y = classification() if model in CLASSIFIERS else regression()
        key = put(self, model, x, y, expect=(202,), name=name, **params)
        self.keys.setdefault(model, []).append(key)
        return key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server where each model has a key that finished (or failed), and `slow` one RUNNING."""
    path = tmp_path_factory.mktemp("schemathesis") / "models.db"
    server = Server(f"sqlite:///{path}")
    try:
        listed = requests.get(f"{server.url}/models", timeout=30).json()["models"]
        server.methods = {entry["model"]: entry["methods"] for entry in listed}
        trained = []
        for model in server.methods:
            params = {"algkwargs": {"seconds": 0}} if model == "slow" else {}
            trained.append((model, server.train(model, "fuzz", **params)))
        for model, key in trained:
            settled(server, model, key)
        server.train("slow", "fuzz-running", algkwargs={"seconds": 3600})
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def api(server):
    """The document as the server serves it; generation steered toward the server's keys."""
    # Arrow and Parquet bodies go on the wire as the bytes generated (or steered) for them;
    # CSV goes as text already.
    schemathesis.serializer(*(m for m, kind in BULK_MEDIA.items() if kind != "csv"))(_table_bytes)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)

    @schema.hook
    def flatmap_case(context, case):
        return _steered(case, server)

    return schema


@pytest.fixture(scope="module")
def session():
    with requests.Session() as session:
        yield session


# -- steering ------------------------------------------------------------------------------


def _columns(model: str) -> list[str]:
    return ["a", "b", "c"] if model in CLASSIFIERS else ["u", "v"]


_SCALARS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
)


def _records(columns: list[str]) -> st.SearchStrategy[list[dict]]:
    """`x` in records orient with the model's own columns and any JSON scalars in them."""
    row = st.fixed_dictionaries({column: _SCALARS for column in columns})
    return st.lists(row, min_size=1, max_size=5)


def _steered(case, server: Server) -> st.SearchStrategy:
    """The generated case as it is, or with one of the model's keys and/or a frame of its
    trained columns (then with arguments the model takes: a method it has, no kwargs)."""
    model = case.operation.path.split("/")[1]
    known = server.keys.get(model)
    method = case.method.upper()
    if not known or method == "DELETE":  # deleting the known keys would starve the other verbs
        return st.just(case)
    if "{key}" in case.operation.path:
        return _steered_history(case, known)
    # A quarter as generated, a quarter with a known key, half with a key and trained columns.
    how = st.sampled_from(["generated", "key", "key and frame", "key and frame"])
    choices = st.tuples(
        how,
        st.sampled_from(known),
        _records(_columns(model)),
        st.sampled_from(server.methods[model]),
    )
    return choices.map(
        lambda drawn: _apply(
            case,
            method,
            key=drawn[1] if "key" in drawn[0] else None,
            records=drawn[2] if "frame" in drawn[0] else None,
            predict=drawn[3],
        )
    )


def _steered_history(case, known: list[str]) -> st.SearchStrategy:
    """A history or alias case as generated, or with a known key (and version 1, which
    every known key has) in its path."""
    if case.meta.generation.mode.is_negative or not isinstance(case.path_parameters, dict):
        return st.just(case)

    def apply(drawn: tuple[bool, str]) -> Any:
        steer, key = drawn
        if steer:
            case.path_parameters = {**case.path_parameters, "key": key}
            if "n" in case.path_parameters:
                case.path_parameters["n"] = 1
        return case

    return st.tuples(st.booleans(), st.sampled_from(known)).map(apply)


def _apply(case, method: str, *, key: str | None, records: list[dict] | None, predict: str):
    """`case` with `key` as its model-key and `records` (with the `predict` method) as its x,
    in the JSON body or as the table body the case sends."""
    table = case.media_type in BULK_MEDIA
    query = dict(case.query) if isinstance(case.query, dict) else None
    if key is not None and query is not None:
        query.update({name: key for name in KEY_NAMES if name in query})
        if method == "GET" or (table and method in ("POST", "PATCH")):
            query.setdefault("model-key", key)
    if table and records is not None and not case.meta.generation.mode.is_negative:
        # NOTE: a negative table case is sent as generated: a steered table body and query
        # would turn it into a valid request, which the server rightly accepts.
        case.body = _table(records, case.media_type, target=method in ("PUT", "PATCH"))
        if query is not None:
            query.update({name: "{}" for name in ("modkwargs", "algkwargs") if name in query})
            query.update({"method": predict} if "method" in query else {})
            query.update({"target": "target"} if method in ("PUT", "PATCH") else {})
    elif isinstance(case.body, dict):
        body = dict(case.body)
        if key is not None and method in ("POST", "PATCH"):
            body.update({name: key for name in KEY_NAMES if name in body})
            body.setdefault("model-key", key)
        if records is not None and "x" in body:
            body.update(x=records, orient="records")
            if "y" in body:
                first = next(iter(records[0]))
                body["y"] = [{"target": row[first]} for row in records]
            if "method" in body:
                body["method"] = predict
            body.update({name: {} for name in ("modkwargs", "algkwargs") if name in body})
        if query is not None:  # the JSON body carries the parameters; the query its key
            query = {n: v for n, v in query.items() if n in KEY_NAMES}
        case.body = body
    if query is not None:
        case.query = query
    return case


def _table_bytes(ctx, value: Any) -> bytes:
    """The wire form of an Arrow or Parquet body: generated bytes as they are, a steered table
    back from its latin-1 text, any other generated value (a negative case's) as JSON.

    NOTE: a steered body is text because schemathesis revalidates a body a hook replaced and
    counts bytes as invalid: the valid table would then be a negative case the server accepts.
    """
    data = getattr(value, "data", value)  # schemathesis' Binary holds generated bytes
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError:
            return data.encode()
    return json.dumps(data).encode()


def _table(records: list[dict], media: str, *, target: bool) -> str:
    """`records` as a CSV, Arrow or Parquet body; with `target`, a `target` column copied from
    the first (as the JSON steering's y)."""
    frame = pd.DataFrame(records)
    if target:
        frame["target"] = frame[frame.columns[0]]
    if BULK_MEDIA[media] == "csv":
        return frame.to_csv(index=False)
    try:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):  # mixed or huge cells
        arrow = pa.Table.from_pandas(frame.astype(str), preserve_index=False)
    sink = io.BytesIO()
    if BULK_MEDIA[media] == "arrow":
        with pa.ipc.new_stream(sink, arrow.schema) as writer:
            writer.write_table(arrow)
    else:
        pyarrow.parquet.write_table(arrow, sink)
    return sink.getvalue().decode("latin-1")


# -- checks --------------------------------------------------------------------------------


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# -- tests ---------------------------------------------------------------------------------


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation the document should hold, from the test registry.

    `/openapi.json` itself is left out: schemathesis skips the document it was loaded from.
    """
    found = [("GET", path) for path in ("/health", "/ready", "/models", "/metrics")]
    for wrapper in registry():
        found += [(verb, f"/{wrapper.name}") for verb in verbs_of(operations_of(wrapper))]
        history = f"/{wrapper.name}/{{key}}"
        found += [
            ("GET", f"{history}/versions"),
            ("GET", f"{history}/versions/{{n}}"),
            ("DELETE", f"{history}/versions/{{n}}"),
            ("GET", f"{history}/aliases"),
            ("PUT", f"{history}/aliases/{{alias}}"),
            ("DELETE", f"{history}/aliases/{{alias}}"),
            ("GET", f"{history}/versions/{{n}}/data"),
            ("POST", f"{history}/refit"),
        ]
    return found


OPERATIONS = _operations()


def test_the_fuzzed_operations_are_all_the_documented_ones(api):
    """The operations fuzzed below are exactly those the served document describes."""
    served = {(result.ok().method.upper(), result.ok().path) for result in api.get_all_operations()}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_get_documented_answers(api, session, method, path):
    """Valid and invalid generated requests get no 5xx, only documented answers, and invalid
    ones are refused."""
    operation = api[path][method]
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    examples = TABLE_EXAMPLES if method in ("PUT", "POST", "PATCH") else MAX_EXAMPLES

    @settings(
        max_examples=HISTORY_EXAMPLES if "{key}" in path else examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case):
        case.call_and_validate(session=session, checks=CHECKS, timeout=30)

    call()


@pytest.mark.parametrize("parameter", ["modkwargs", "algkwargs", "retrain", "name", "orient", "y"])
def test_null_for_an_optional_parameter_is_documented_or_refused(server, api, parameter):
    """A PUT with null for an optional parameter is refused (400) unless the document allows it."""
    x, y = regression()
    body = {"x": x.to_dict(orient="records"), "y": y.to_frame().to_dict(orient="records")}
    body = {**body, "orient": "records", "name": f"null-{parameter}", parameter: None}
    if parameter == "orient":
        body["x"], body["y"] = x.to_dict(), y.to_frame().to_dict()  # the default orient: columns
    fit = api.raw_schema["components"]["schemas"]["FitRequest"]
    allowed = _allows_null(fit["properties"][parameter], api.raw_schema)
    response = requests.put(f"{server.url}/linreg", json=body, timeout=30)
    assert allowed or response.status_code == 400, (response.status_code, response.text)


def _allows_null(schema: dict, document: dict) -> bool:
    return jsonschema.Draft202012Validator(
        {**schema, "components": document["components"]}
    ).is_valid(None)
