"""Generated request bodies: whatever a client sends, the answer is never a server error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlserver.frames.orients import ORIENTS
from support import in_process, registry

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
labels = st.one_of(st.text(max_size=3), st.integers(-3, 30).map(str))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(labels, inner, max_size=4)
    ),
    max_leaves=20,
)
frames = st.one_of(
    json_values,
    st.dictionaries(labels, st.dictionaries(labels, scalars, max_size=4), max_size=4),
    st.lists(st.dictionaries(labels, scalars, max_size=3), max_size=4),
    st.lists(st.lists(scalars, max_size=3), max_size=4),
    st.fixed_dictionaries(
        {"columns": st.lists(labels, max_size=3), "data": st.lists(st.lists(scalars, max_size=3))},
        optional={"index": st.lists(scalars, max_size=4)},
    ),
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "x": st.one_of(frames, frames.map(json.dumps)),
        "y": st.one_of(frames, frames.map(json.dumps)),
        "orient": st.one_of(st.sampled_from(ORIENTS), json_values),
        "modkwargs": json_values,
        "algkwargs": json_values,
        "retrain": json_values,
        "name": json_values,
        "model-key": json_values,
    },
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The test registry on a SQLite file of this module's, called in process."""
    path = tmp_path_factory.mktemp("fuzz") / "models.db"
    with in_process(registry(), f"sqlite:///{path}") as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=st.sampled_from(["PUT", "POST", "PATCH", "DELETE"]), body=bodies)
def test_generated_bodies_never_cause_server_errors(client, method, body):
    """Any JSON body on any verb gets a 2xx or 4xx with the error shape, never a 5xx."""
    model = "sgd" if method == "PATCH" else "linreg"
    response = client.simulate_request(method, f"/{model}", json=body)
    assert response.status_code < 500, (body, response.json)
    if response.status_code >= 400:
        assert set(response.json) >= {"title", "description"}
