"""Frames of every kind pandas writes, in every orient and both forms: decoded as
`pd.read_json` reads them (or refused with a 400), and served without a 500."""

from __future__ import annotations

import io
import warnings

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor

from mlserver import Registry, wrap_estimator
from mlserver.errors import InvalidPayload
from mlserver.frames.orients import ORIENTS, decode_frame
from support import in_process, settled

# A sweep of every frame form in every orient: about a minute, outside the inner loop.
pytestmark = pytest.mark.slow

N = 4
FRAMES = {
    "floats": pd.DataFrame({"a": [1.5, 2.25, np.nan, -4.0], "b": [1, 2, 3, 4]}),
    "Int64": pd.DataFrame({"a": pd.array([1, None, 3, 4], dtype="Int64")}),
    "boolean": pd.DataFrame({"a": pd.array([True, None, False, True], dtype="boolean")}),
    "bool": pd.DataFrame({"a": [True, False, False, True]}),
    "Float64": pd.DataFrame({"a": pd.array([1.5, None, 3.25, 4.0], dtype="Float64")}),
    "string": pd.DataFrame({"a": pd.array(["x", None, "z", "w"], dtype="string")}),
    "str": pd.DataFrame({"a": ["x", "y", "z", "w"]}),
    "mixed": pd.DataFrame({"a": [1, "x", 2.5, None]}),
    "datetime": pd.DataFrame({"a": pd.date_range("2024-01-01", periods=N)}),
    "datetime-tz": pd.DataFrame({"a": pd.date_range("2024-01-01", periods=N, tz="Europe/Paris")}),
    "timedelta": pd.DataFrame({"a": pd.to_timedelta([1, 2, 3, 4], unit="s")}),
    "categorical": pd.DataFrame({"a": pd.Categorical(["x", "y", "x", "z"])}),
    "ordered": pd.DataFrame({"a": pd.Categorical(["lo", "hi", "lo", "hi"], ["lo", "hi"], True)}),
    "duplicate-index": pd.DataFrame({"a": [1.5, 2.5, 3.5, 4.5]}, index=[0, 0, 1, 1]),
    "string-index": pd.DataFrame({"a": [1.5, 2.5, 3.5, 4.5]}, index=list("pqrs")),
    "datetime-index": pd.DataFrame(
        {"a": [1.5, 2.5, 3.5, 4.5]}, index=pd.date_range("2024-01-01", periods=N)
    ),
    "multi-index": pd.DataFrame(
        {"a": [1.5, 2.5, 3.5, 4.5]},
        index=pd.MultiIndex.from_tuples([(0, "x"), (0, "y"), (1, "x"), (1, "y")]),
    ),
    "named-index": pd.DataFrame(
        {"a": [1.5, 2.5, 3.5, 4.5]}, index=pd.Index([5, 6, 7, 8], name="id")
    ),
    "numeric-names": pd.DataFrame({0: [1.5, 2.5, 3.5, 4.5], 1: [5, 6, 7, 8]}),
    "unicode-names": pd.DataFrame({"é€漢": [1.5, 2.5, 3.5, 4.5], "ß": [1, 2, 3, 4]}),
    "int64-extremes": pd.DataFrame({"a": np.array([2**63 - 1, -(2**63), 0, 1], dtype=np.int64)}),
}
CASES = [
    (name, orient, dates) for name in FRAMES for orient in ORIENTS for dates in ("epoch", "iso")
]
IDS = [f"{name}-{orient}-{dates}" for name, orient, dates in CASES]


def _json(data: pd.DataFrame | pd.Series, orient: str, dates: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 deprecates epoch dates: both are sent
        return data.to_json(orient=orient, date_format=dates)


def _text(name: str, orient: str, dates: str = "epoch") -> str | None:
    try:
        return _json(FRAMES[name], orient, dates)
    except ValueError:  # e.g. orient columns/index of a duplicate index: pandas refuses
        return None


def _as_read_json(got: pd.DataFrame, expected: pd.DataFrame, orient: str) -> pd.DataFrame:
    """`got` with the differences mlserver keeps on purpose undone, so the rest must be equal:
    floats that happen to be whole stay float64 (read_json makes them int64), epoch numbers
    on an axis stay numbers (read_json guesses datetimes), and orient table keeps integer
    column labels (read_json turns them into strings there only)."""
    got = got.copy()
    for position, (have, want) in enumerate(zip(got.dtypes, expected.dtypes, strict=True)):
        if have == np.float64 and want == np.int64:
            column = got.iloc[:, position]
            if np.array_equal(column, expected.iloc[:, position]):
                got.isetitem(position, column.astype(np.int64))
    if isinstance(expected.index, pd.DatetimeIndex) and not isinstance(got.index, pd.DatetimeIndex):
        unit = "ms" if got.index.dtype == np.int64 else None
        got.index = pd.to_datetime(got.index, unit=unit).as_unit(expected.index.unit)
    if orient == "table":
        got.columns = [str(c) for c in got.columns]
        expected = expected.set_axis([str(c) for c in expected.columns], axis=1)
    return got


@pytest.mark.parametrize(("name", "orient", "dates"), CASES, ids=IDS)
def test_frames_decode_as_read_json_reads_them(name, orient, dates):
    """Text and value forms decode to what read_json makes of the text, or to a 400; where
    read_json itself fails, to what the same frame is in orient split."""
    text = _text(name, orient, dates)
    if text is None:
        return
    try:
        expected = pd.read_json(io.StringIO(text), orient=orient)
    except (ValueError, NotImplementedError):
        expected = None
    for form in (text, orjson.loads(text)):
        try:
            got = decode_frame(form, orient).frame
        except InvalidPayload as exc:
            assert str(exc)
            continue
        if expected is None:  # read_json fails on it: it must mean what it means in split
            split = decode_frame(_text(name, "split", dates), "split").frame
            pd.testing.assert_frame_equal(got, split, check_column_type=orient != "table")
            continue
        pd.testing.assert_frame_equal(_as_read_json(got, expected, orient), expected)


def test_nullable_booleans_keep_their_nulls_in_every_orient():
    """A nullable boolean column's null stays null: boolean dtype in orient table, NaN in a
    float column elsewhere (as read_json has it), never False."""
    frame = FRAMES["boolean"]
    table = decode_frame(frame.to_json(orient="table"), "table").frame
    assert str(table["a"].dtype) == "boolean" and table["a"].isna().tolist()[1]
    for orient in ("columns", "split", "records", "index"):
        decoded = decode_frame(frame.to_json(orient=orient), orient).frame
        assert decoded.iloc[:, 0].tolist()[0] == 1.0
        assert np.isnan(decoded.iloc[:, 0].tolist()[1])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """An app serving a model that takes any frame (DummyRegressor)."""
    path = tmp_path_factory.mktemp("frames") / "models.db"
    models = Registry([wrap_estimator(DummyRegressor, "dummy")])
    with in_process(models, f"sqlite:///{path}") as client:
        yield client


@pytest.mark.parametrize(("name", "orient", "dates"), CASES, ids=IDS)
def test_frames_train_and_predict_without_a_500(client, name, orient, dates):
    """Every frame fits and predicts (or is a 4xx naming the problem) in both forms, and the
    answer carries x's rows as read_json reads them back."""
    text = _text(name, orient, dates)
    if text is None:
        return
    frame = FRAMES[name]
    y = pd.Series(np.arange(len(frame), dtype=np.float64) + 0.5, index=frame.index, name="t")
    y_text = _json(y, orient, dates)
    for x in (text, orjson.loads(text)):
        y_form = y_text if isinstance(x, str) else orjson.loads(y_text)
        response = client.simulate_put("/dummy", json={"x": x, "y": y_form, "orient": orient})
        assert response.status_code in (200, 202, 400, 422), response.text
        if response.status_code >= 400:
            assert response.json["description"]
            continue
        key = response.json["model-key"]
        status = settled(client, "dummy", key)
        assert status["status"] == "FINISHED", status
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = client.simulate_post(
                "/dummy", json={"x": x, "orient": orient, "model-key": key}
            )
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code != 200:
            continue
        answered = answer.json["y"]
        answered = answered if isinstance(x, str) else orjson.dumps(answered).decode()
        back = pd.read_json(io.StringIO(answered), orient=orient)
        try:
            sent = pd.read_json(io.StringIO(text), orient=orient)
        except ValueError:  # read_json's own failure (integer labels in table with iso)
            sent = decode_frame(text, orient).frame
        assert len(back) == len(sent)
        if orient not in ("values", "records"):
            pd.testing.assert_index_equal(back.index, sent.index, exact=False)


def test_a_datetime_column_where_strings_were_trained_is_a_422(client):
    """The schema check compares kinds: datetimes where strings were trained are refused,
    naming the column."""
    trained = pd.DataFrame({"when": ["a", "b", "c"]})
    body = {"x": trained.to_json(orient="table"), "y": [1.0, 2.0, 3.0], "orient": "table"}
    body["y"] = pd.Series([1.0, 2.0, 3.0], name="t").to_json(orient="table")
    key = client.simulate_put("/dummy", json=body).json["model-key"]
    assert settled(client, "dummy", key)["status"] == "FINISHED"
    dates = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=3)})
    answer = client.simulate_post(
        "/dummy", json={"x": dates.to_json(orient="table"), "orient": "table", "model-key": key}
    )
    assert answer.status_code == 422
    assert "'when' is datetime64[ns], trained as str" in answer.json["description"]
