"""The stored form of training data: whatever a fit can decode comes back exactly (values
bit for bit, dtypes, labels and their types, the index, y's kind), or is refused; the
content digest tells equal data from unequal; the answers of `GET .../data` go back in as a
fit's body."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pyarrow.ipc
import pytest

from mlserver.errors import NotStorable
from mlserver.frames import stored
from mlserver.frames.keys import training_key
from mlserver.frames.orients import ORIENTS, decode_training

LIMITS = {"max_rows": 10**6, "max_columns": 10**4}


def frames() -> dict[str, tuple[pd.DataFrame, pd.Series | pd.DataFrame | None]]:
    rng = np.random.default_rng(7)
    n = 25
    numbers = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    mixed = pd.DataFrame(
        {
            "f": rng.normal(size=n) * 1e300,
            "i": rng.integers(-(2**62), 2**62, size=n),
            "b": rng.integers(0, 2, size=n).astype(bool),
            "s": [f"é{i}" if i % 3 else "" for i in range(n)],
            "n": [None if i % 4 == 0 else f"v{i}" for i in range(n)],
            "nan": [np.nan if i % 5 == 0 else float(i) / 7 for i in range(n)],
        },
        index=pd.Index([f"r{i}" for i in range(n)], name="row"),
    )
    integer_labels = pd.DataFrame(rng.normal(size=(n, 2)), columns=[0, 1], index=range(10, 10 + n))
    labels = pd.Series(rng.integers(0, 3, size=n), name="label")
    return {
        "floats, series y": (numbers, labels),
        "mixed kinds, string index": (mixed, pd.Series(rng.normal(size=n), index=mixed.index)),
        "integer labels, frame y": (
            integer_labels,
            pd.DataFrame(
                {"t1": rng.normal(size=n), "t2": rng.normal(size=n)}, index=range(10, 10 + n)
            ),
        ),
        "no y": (numbers, None),
        "one row": (numbers.head(1), labels.head(1)),
        "class names": (numbers, pd.Series(["yes", "no"] * 12 + ["yes"], name="answer")),
    }


def decoded(x: pd.DataFrame, y, orient: str):
    """What a fit decodes from `x.to_json(orient)` and `y.to_json(orient)`."""
    y_text = None if y is None else y.to_json(orient=orient)
    rows, target = decode_training(x.to_json(orient=orient), y_text, orient, **LIMITS)
    return rows.frame, target


def assert_same(x, y, back_x, back_y):
    pd.testing.assert_frame_equal(back_x, x, check_exact=True, check_column_type=True)
    assert list(map(type, back_x.columns)) == list(map(type, x.columns))
    assert type(back_x.index) is type(x.index) and back_x.index.names == x.index.names
    if y is None:
        assert back_y is None
    elif isinstance(y, pd.Series):
        pd.testing.assert_series_equal(back_y, y, check_exact=True)
        assert type(back_y.name) is type(y.name)
    else:
        pd.testing.assert_frame_equal(back_y, y, check_exact=True, check_column_type=True)
    for column in x.columns[[d == np.dtype(object) for d in x.dtypes]]:
        assert [type(v) for v in back_x[column]] == [type(v) for v in x[column]]


@pytest.mark.parametrize("orient", ORIENTS)
@pytest.mark.parametrize("case", list(frames()))
def test_what_a_fit_decodes_comes_back_exactly(case, orient):
    x, y = decoded(*frames()[case], orient)
    encoded = stored.encode(x, y)
    assert (encoded.rows, encoded.columns) == x.shape
    assert encoded.raw_bytes >= x.memory_usage(deep=True).sum()
    assert_same(x, y, *stored.decode(encoded.blob))


def test_extension_dtypes_and_dates_come_back_exactly():
    x = pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": pd.array([0.5, None, 2.0], dtype="Float64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "s": pd.array(["a", None, "c"], dtype="string"),
            "d": pd.to_datetime(["2026-01-01", "2026-06-30", None]),
            "c": pd.Categorical(["lo", "hi", "lo"]),
        }
    )
    assert_same(x, None, *stored.decode(stored.encode(x, None).blob))


@pytest.mark.parametrize(
    "x, says",
    [
        (pd.DataFrame({"m": [1, "a", None]}), "x column 'm' holds values of types int, str"),
        (pd.DataFrame({"m": ["a", 1.5]}), "float, str"),
        (pd.DataFrame({"m": [[1, 2], [3]]}), "list"),
        (pd.DataFrame({(1, 2): [1.0]}), "label of type tuple"),
        (pd.DataFrame({"a": [1.0]}, index=pd.MultiIndex.from_tuples([(1, 2)])), "MultiIndex"),
    ],
)
def test_what_would_not_come_back_exactly_is_refused_naming_it(x, says):
    with pytest.raises(NotStorable, match=says.replace("(", r"\(").replace(")", r"\)")):
        stored.encode(x, None)


def test_the_digest_tells_equal_data_from_unequal():
    x = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    y = pd.Series([0, 1], name="t")
    same = stored.content_digest(x, y)
    assert len(same) == 64 and same == stored.content_digest(x.copy(), y.copy())
    others = [
        (x.rename(columns={"a": "z"}), y),
        (x.set_axis([0, 1], axis=1), y),
        (x.astype({"b": "float64"}), y),
        (x, y.rename("u")),
        (x, y.to_frame()),
        (x, None),
        (x.set_axis([5, 6]), y.set_axis([5, 6])),
        (x.assign(a=[1.0, 2.0000000000000004]), y),
    ]
    digests = {stored.content_digest(*pair) for pair in others}
    assert len(digests) == len(others) and same not in digests


def test_the_training_key_did_not_change():
    """Keys of stored versions must stay what they were: pinned to a literal."""
    x = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    y = pd.Series([0, 1], name="t")
    assert training_key(x, y, {"C": 1}, {}) == "814ae3ff9c2611dbcaa176ad27cb6d81"


@pytest.mark.parametrize("case", ["floats, series y", "mixed kinds, string index", "no y"])
def test_the_json_answer_goes_back_in_as_a_fit_body(case):
    x, y = decoded(*frames()[case], "split")
    body = orjson.loads(orjson.dumps(stored.json_answer(x, y)))
    assert body["orient"] == "split"
    rows, target = decode_training(body["x"], body["y"], "split", **LIMITS)
    assert_same(x, y, rows.frame, target)


def test_the_arrow_answer_names_its_targets():
    x = pd.DataFrame({"a": [1.0, 2.0], "t": [3, 4]})
    y = pd.Series([0.5, 1.5], name="t")
    table = pyarrow.ipc.open_stream(io.BytesIO(stored.arrow_answer(x, y))).read_all()
    assert orjson.loads(table.schema.metadata[stored.TARGETS]) == ["t_y"]
    frame = table.to_pandas()
    assert list(frame.columns) == ["a", "t", "t_y"]
    np.testing.assert_array_equal(frame["t_y"].to_numpy(), y.to_numpy())
    unnamed = pyarrow.ipc.open_stream(stored.arrow_answer(x, y.rename(None))).read_all()
    assert orjson.loads(unnamed.schema.metadata[stored.TARGETS]) == ["y"]
