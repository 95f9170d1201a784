"""Arrow, Parquet and CSV bodies: the same verbs with tables instead of JSON."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet
import pytest
from sklearn.linear_model import LinearRegression

from mlserver.errors import InvalidPayload
from mlserver.frames.bulk import decode_bulk
from mlserver.frames.orients import decode_frame
from mlserver.frames.schema import Schema
from mlserver.http.body import ARROW_STREAM
from support import in_process, put, registry, regression, settled

PARQUET = "application/vnd.apache.parquet"


def arrow(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pa.parquet.write_table(pa.Table.from_pandas(frame), sink)
    return sink.getvalue().to_pybytes()


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.fixture
def client(sqlite_url):
    """The test registry on the test's SQLite file, taking bodies up to 1 MB."""
    with in_process(registry(), sqlite_url, max_body_bytes=1_000_000) as client:
        yield client


def fit_arrow(client, x: pd.DataFrame, y: pd.Series) -> str:
    """PUT x and y as one Arrow body (y the `target` column); the key it answers."""
    return client.simulate_put(
        "/linreg",
        body=arrow(x.assign(target=y)),
        content_type=ARROW_STREAM,
        params={"target": "target"},
    ).json["model-key"]


@pytest.mark.parametrize(
    ("media", "encode"), [(ARROW_STREAM, arrow), (PARQUET, parquet), ("text/csv", csv)]
)
def test_fit_from_a_table_body_with_target(client, media, encode):
    """A table body with ?target= trains on the other columns; predictions match sklearn."""
    x, y = regression()
    body = encode(x.assign(target=y))
    response = client.simulate_put(
        "/linreg", body=body, content_type=media, params={"target": "target"}
    )
    assert response.status_code == 202, response.json
    status = settled(client, "linreg", response.json["model-key"])
    assert status["status"] == "FINISHED"
    assert [f["name"] for f in status["metadata"]["features"]] == ["u", "v"]
    assert status["metadata"]["targets"] == ["target"]
    answer = client.simulate_post(
        "/linreg",
        body=encode(x),
        content_type=media,
        params={"model-key": response.json["model-key"]},
    )
    assert answer.status_code == 200, answer.json
    got = pd.read_json(io.StringIO(__import__("json").dumps(answer.json["y"])), orient="split")
    np.testing.assert_allclose(got["target"].to_numpy(), LinearRegression().fit(x, y).predict(x))


def test_arrow_in_arrow_out_keeps_the_index(client):
    """With Accept: Arrow the answer is an Arrow stream on x's index, the key in headers."""
    x, y = regression()
    x.index = y.index = x.index + 500
    key = fit_arrow(client, x, y)
    settled(client, "linreg", key)
    answer = client.simulate_post(
        "/linreg",
        body=arrow(x),
        content_type=ARROW_STREAM,
        params={"model-key": key},
        headers={"Accept": ARROW_STREAM},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == ARROW_STREAM
    assert answer.headers["x-model-key"] == key and answer.headers["x-model-version"] == "1"
    frame = pa.ipc.open_stream(answer.content).read_all().to_pandas()
    assert list(frame.index) == list(x.index)
    expected = LinearRegression().fit(x, y).predict(x)
    np.testing.assert_array_equal(frame["target"].to_numpy(), expected)


def test_json_and_arrow_bodies_of_the_same_data_share_a_key(client):
    """The key depends on the data, not on whether it came as JSON or as Arrow."""
    x, y = regression()
    as_json = put(client, "linreg", x, y)
    as_arrow = fit_arrow(client, x, y)
    assert as_arrow == as_json


@pytest.mark.parametrize(
    ("body", "media", "params", "status", "needle"),
    [
        (b"not arrow", ARROW_STREAM, {}, 400, "not a readable arrow body"),
        (b"a,b\n1,2\n", "text/csv", {"target": "c"}, 400, "'c'"),
        (b"a,b\n1,2\n", "text/csv", {"x": "{}"}, 400, "come in the body"),
        (b"a;b", "application/xml", {}, 415, "text/csv"),
        (b"a\n" + b"1\n" * 600_000, "text/csv", {}, 413, "limit"),
    ],
)
def test_bad_table_bodies(client, body, media, params, status, needle):
    """Unreadable tables, unknown targets, mixed forms, other media and huge bodies are refused."""
    response = client.simulate_put("/linreg", body=body, content_type=media, params=params)
    assert response.status_code == status, response.json
    assert needle in response.json["description"]
    assert client.simulate_get("/linreg").json["keys"] == []


def test_a_target_given_twice_is_a_400(client):
    """Two `target` values in the query string are a 400 naming it, and nothing is stored."""
    x, y = regression()
    response = client.simulate_put(
        "/linreg",
        body=arrow(x.assign(target=y)),
        content_type=ARROW_STREAM,
        query_string="target=target&target=u",
    )
    assert response.status_code == 400, response.text
    assert response.json["parameter"] == "target"
    assert client.simulate_get("/linreg").json["keys"] == []


FLOAT_TABLES = {
    "plain": pd.DataFrame({"u": [0.5, 1.5], "v": [2.0, -1.0]}),
    "integer-like names": pd.DataFrame({"0": [0.5, 1.5], "1": [2.0, -1.0]}),
    "labelled index": pd.DataFrame({"u": [0.5, 1.5]}, index=[7, 9]),
    "shifted range index": pd.DataFrame({"u": [0.5, 1.5]}, index=pd.RangeIndex(5, 7)),
    "named index": pd.DataFrame({"u": [0.5, 1.5]}).rename_axis("row"),
    "with nulls": pd.DataFrame({"u": [0.5, None]}),
    "mixed dtypes": pd.DataFrame({"u": [0.5, 1.5], "n": [1, 2]}),
    "nullable floats": pd.DataFrame({"u": pd.array([0.5, None], dtype="Float64")}),
}


@pytest.mark.parametrize("case", FLOAT_TABLES)
def test_float_tables_decode_as_through_pandas(case) -> None:
    """The all-float shortcut gives what Arrow's own conversion to pandas gives: values,
    dtypes, labels (integer-like ones as integers) and index."""
    frame = FLOAT_TABLES[case]
    expected = pa.ipc.open_stream(arrow(frame)).read_all().to_pandas()
    expected.columns = [int(c) if c.isdigit() else c for c in expected.columns]
    decoded = decode_bulk(arrow(frame), "arrow").frame
    pd.testing.assert_frame_equal(decoded, expected, check_column_type=False)


def test_duplicate_float_columns_are_refused() -> None:
    """An Arrow body with two float columns of the same name is refused, naming the column."""
    table = pa.table([pa.array([1.0]), pa.array([2.0])], names=["u", "u"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(InvalidPayload, match="duplicate columns 'u'"):
        decode_bulk(sink.getvalue().to_pybytes(), "arrow")


def test_arrow_floats_by_position_with_orient_values() -> None:
    """orient=values matches an Arrow body's columns by position, as for any other body."""
    schema = Schema.of(pd.DataFrame({"a": [0.0], "b": [0.0]}))
    given = pd.DataFrame({"b": [1.0, 2.0], "a": [3.0, 4.0]})
    table = decode_frame(decode_bulk(arrow(given), "arrow", "values"), "values", schema=schema)
    assert table.frame.to_numpy().tolist() == given.to_numpy().tolist()


def test_arrow_floats_in_another_column_order_go_straight_to_the_array() -> None:
    """An all-float Arrow body is put in training order by name, without a frame."""
    trained = pd.DataFrame({"a": [0.0], "b": [0.0], "c": [0.0]})
    given = pd.DataFrame({"c": [1.0, 2.0], "a": [3.0, 4.0], "b": [5.0, 6.0]})
    table = decode_frame(decode_bulk(arrow(given), "arrow"), "split", schema=Schema.of(trained))
    assert table.conformed
    np.testing.assert_array_equal(table.array, given[["a", "b", "c"]].to_numpy())


def test_arrow_floats_with_other_columns_are_refused_by_name(client) -> None:
    """A float body whose names differ from training: 422 naming them, as for JSON; in
    another order it is served."""
    x, y = regression()
    key = fit_arrow(client, x, y)
    assert settled(client, "linreg", key)["status"] == "FINISHED"
    renamed = x.rename(columns={x.columns[0]: "other"})
    answer = client.simulate_post(
        "/linreg", body=arrow(renamed), content_type=ARROW_STREAM, params={"model-key": key}
    )
    assert answer.status_code == 422
    assert "other" in answer.json["description"]
    shuffled = x[list(reversed(x.columns))]
    answer = client.simulate_post(
        "/linreg", body=arrow(shuffled), content_type=ARROW_STREAM, params={"model-key": key}
    )
    assert answer.status_code == 200
    expected = LinearRegression().fit(x, y).predict(x)
    served = [row[0] for row in answer.json["y"]["data"]]
    np.testing.assert_allclose(served, expected, rtol=1e-12)


def test_arrow_labels_as_the_general_path_gives_them() -> None:
    """Integer-like names become integers only when all of them are, as `_axis` decides."""
    decoded = decode_bulk(arrow(pd.DataFrame({"1": [0.5], "a": [1.5]})), "arrow").frame
    assert decoded.columns.tolist() == ["1", "a"]


def test_accept_with_a_wildcard_can_prefer_arrow(client) -> None:
    """JSON at q=0.5 and */* at q=1: Arrow wins the negotiation."""
    x, y = regression()
    fit = client.simulate_put(
        "/linreg",
        json={"x": x.to_json(orient="split"), "y": y.to_json(orient="split"), "orient": "split"},
    )
    key = fit.json["model-key"]
    settled(client, "linreg", key)
    answer = client.simulate_post(
        "/linreg",
        json={"x": x.to_json(orient="split"), "orient": "split", "model-key": key},
        headers={"Accept": "application/json;q=0.5, */*"},
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == ARROW_STREAM


def test_a_target_naming_every_column_is_a_400(client):
    """A bulk target that leaves x without columns is refused at once, nothing stored."""
    x, y = regression()
    body = arrow(x.assign(target=y))
    every = ",".join([*map(str, x.columns), "target"])
    response = client.simulate_put(
        "/linreg", body=body, content_type=ARROW_STREAM, params={"target": every}
    )
    assert response.status_code == 400, response.text
    assert "every column" in response.json["description"]
    assert client.simulate_get("/linreg").json["keys"] == []
