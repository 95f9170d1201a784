"""Stored training data (mlserver.frames.stored) against real pandas and pyarrow: the exact
round trip, its refusals, the content digest and the two answers of `GET .../data`."""

from __future__ import annotations

import re
import warnings

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from mlserver.errors import MLServerError, NotStorable
from mlserver.frames.bulk import decode_bulk, split_target
from mlserver.frames.encode import dumps
from mlserver.frames.orients import ORIENTS, decode_training
from mlserver.frames.stored import (
    FORMAT,
    arrow_answer,
    content_digest,
    decode,
    encode,
    json_answer,
)

N = 4
FRAMES = {
    "floats": pd.DataFrame({"a": [1.5, 2.25, np.nan, -4.0], "b": [1, 2, 3, 4]}),
    "exact": pd.DataFrame({"a": [0.1 + 0.2, 1 / 3, 1e-300, -0.0], "b": [5e-324, np.inf, 0.0, 1.0]}),
    "Int64": pd.DataFrame({"a": pd.array([1, None, 3, 4], dtype="Int64")}),
    "boolean": pd.DataFrame({"a": pd.array([True, None, False, True], dtype="boolean")}),
    "bool": pd.DataFrame({"a": [True, False, False, True]}),
    "Float64": pd.DataFrame({"a": pd.array([1.5, None, 3.25, 4.0], dtype="Float64")}),
    "string": pd.DataFrame({"a": pd.array(["x", None, "", "w"], dtype="string")}),
    "str": pd.DataFrame({"a": ["x", "", None, "é€漢"]}),
    "mixed": pd.DataFrame({"a": [1, "x", 2.5, None], "b": [np.nan, None, "1", 1.0]}),
    "datetime": pd.DataFrame({"a": pd.date_range("2024-01-01", periods=N)}),
    "datetime-tz": pd.DataFrame({"a": pd.date_range("2024-01-01", periods=N, tz="Europe/Paris")}),
    "categorical": pd.DataFrame({"a": pd.Categorical(["x", "y", "x", "z"])}),
    "ordered": pd.DataFrame({"a": pd.Categorical(["lo", "hi", "lo", "hi"], ["lo", "hi"], True)}),
    "duplicate-index": pd.DataFrame({"a": [1.5, 2.5, 3.5, 4.5]}, index=[0, 0, 1, 1]),
    "string-index": pd.DataFrame({"a": [1.5, 2.5, 3.5, 4.5]}, index=list("pqrs")),
    "named-index": pd.DataFrame(
        {"a": [1.5, 2.5, 3.5, 4.5]}, index=pd.Index([5, 6, 7, 8], name="id")
    ),
    "numeric-names": pd.DataFrame({0: [1.5, 2.5, 3.5, 4.5], 1: [5, 6, 7, 8]}),
    "unicode-names": pd.DataFrame({"é€漢": [1.5, 2.5, 3.5, 4.5], "ß": [1, 2, 3, 4]}),
    "int64-extremes": pd.DataFrame({"a": np.array([2**63 - 1, -(2**63), 0, 1], dtype=np.int64)}),
    "uint64": pd.DataFrame({"a": np.array([2**64 - 1, 0, 1, 2], dtype=np.uint64)}),
    "big-ints": pd.DataFrame({"a": [2**70, -(2**80), 1, 2]}),
    "many-columns": pd.DataFrame(np.arange(4 * 300.0).reshape(4, 300)),
}
TARGETS = {
    "none": lambda x: None,
    "unnamed": lambda x: pd.Series([0.5, 1.5, 2.5, 3.5][: len(x)], index=x.index),
    "named": lambda x: pd.Series(list(range(len(x))), index=x.index, name="t"),
    "frame": lambda x: pd.DataFrame({"t": range(len(x)), "u": list("abcd")[: len(x)]}, x.index),
}


def same(a, b) -> None:
    """a and b are equal exactly: values, dtypes, labels and their types, index classes."""
    if a is None or b is None:
        assert a is None and b is None
        return
    assert type(a) is type(b)
    check = (
        pd.testing.assert_series_equal
        if isinstance(a, pd.Series)
        else pd.testing.assert_frame_equal
    )
    kwargs = {} if isinstance(a, pd.Series) else {"check_column_type": True}
    check(a, b, check_exact=True, check_index_type=True, **kwargs)
    if isinstance(a, pd.DataFrame):
        assert list(map(type, a.columns)) == list(map(type, b.columns))


def decoded(frame: pd.DataFrame, orient: str, y=None):
    """x and y as a fit decodes them from `to_json(orient)`, or None where that is refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            text = frame.to_json(orient=orient)
            y_text = None if y is None else y.to_json(orient=orient)
        except ValueError:
            return None
    try:
        rows, target = decode_training(text, y_text, orient, max_rows=10**6, max_columns=10**6)
    except MLServerError:  # a 4xx of the decoder: nothing to store
        return None
    return rows.frame, target


@pytest.mark.parametrize("orient", ORIENTS)
def test_every_decoded_frame_round_trips_exactly(orient):
    """Every frame as a fit decodes it from each orient, with every kind of y, comes back
    from its stored form exactly, and its digest is the original's."""
    for name, frame in FRAMES.items():
        for target in TARGETS.values():
            pair = decoded(frame, orient, target(frame))
            if pair is None:
                continue
            x, y = pair
            stored = encode(x, y)
            assert (stored.rows, stored.columns) == x.shape, name
            back_x, back_y = decode(stored.blob)
            same(x, back_x)
            same(y, back_y)
            assert content_digest(back_x, back_y) == content_digest(x, y), name


def test_frames_beyond_json_round_trip_exactly():
    """Frames an Arrow body or a program can make round trip too: NaN and None apart in an
    object column, 1 apart from "1" and 1.0, NaN that is not NA in Float64, NaT, uint64,
    -0.0 bit for bit, categories unused, a MultiIndex, an object index, RangeIndex columns."""
    frames = [
        pd.DataFrame({"a": [np.nan, None, 1, "1"], "b": [1.0, True, b"x", pd.NA]}),
        pd.DataFrame(
            {"a": pd.arrays.FloatingArray(np.array([np.nan, 1.0]), np.array([False, True]))}
        ),
        pd.DataFrame(
            {"t": pd.to_datetime(["2024-01-01", None]), "d": pd.to_timedelta([1, None], unit="s")}
        ),
        pd.DataFrame({"c": pd.Categorical(["x", None], categories=["z", "x", "q"])}),
        pd.DataFrame(
            {"a": [1.5, 2.5]},
            index=pd.MultiIndex.from_tuples([(0, "x"), (1, "y")], names=["k", None]),
        ),
        pd.DataFrame({"a": [1.5, 2.5, 3.5]}, index=pd.Index([1, "1", None], dtype=object)),
        pd.DataFrame(np.arange(6.0).reshape(3, 2)),
        pd.DataFrame([[1.0, 2.0]], columns=pd.Index([0, "0"], dtype=object)),
        pd.DataFrame({"a": np.array([0.0, -0.0, float.fromhex("0x1.0000000000001p0")])}),
        pd.DataFrame({"one": [7.0]}),
    ]
    for x in frames:
        for y in (None, pd.Series(np.arange(len(x)), index=x.index, name=0)):
            back_x, back_y = decode(encode(x, y).blob)
            same(x, back_x)
            same(y, back_y)
    bits = decode(encode(frames[8], None).blob)[0]["a"].to_numpy().view(np.uint64)
    assert bits.tolist() == frames[8]["a"].to_numpy().view(np.uint64).tolist()


def test_a_refit_on_decoded_data_gives_the_same_model():
    """A model trained on the decoded data equals the one trained on the original."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.standard_normal((200, 5)), columns=list("abcde"))
    y = pd.Series((x["a"] + rng.standard_normal(200) > 0).astype(int), name="label")
    back_x, back_y = decode(encode(x, y).blob)
    one, two = LogisticRegression().fit(x, y), LogisticRegression().fit(back_x, back_y)
    assert one.coef_.tobytes() == two.coef_.tobytes()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (pd.DataFrame({"a": [[1, 2], [3]]}), "x column 'a' holds lists or objects"),
        (pd.DataFrame({"a": [{"k": 1}, 2]}), "x column 'a' holds lists or objects"),
        (
            pd.DataFrame({"a": pd.Series([np.float32(1.0), "x"], dtype=object)}),
            "x column 'a' holds values of type float32",
        ),
        (pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]), "x has duplicate columns ['a']"),
        (pd.DataFrame({"a": [1 + 2j]}), "x column 'a' is of dtype complex128"),
        (
            pd.DataFrame({"a": pd.period_range("2024-01", periods=2, freq="M")}),
            "x column 'a' is of dtype period",
        ),
        (
            pd.DataFrame({"a": [1.0]}, index=[pd.Timestamp("2024-01-01").to_pydatetime()]).set_axis(
                pd.Index([object()], dtype=object)
            ),
            "x's index holds values of type object",
        ),
    ],
    ids=["lists", "dicts", "numpy-scalar", "duplicates", "complex", "period", "odd-index"],
)
def test_what_cannot_come_back_exactly_is_refused(x, message):
    """Data the stored form cannot give back exactly is NotStorable, naming the column."""
    with pytest.raises(NotStorable) as info:
        encode(x, None)
    assert message in str(info.value)


def test_a_blob_that_is_not_a_dataset_is_refused():
    """decode refuses bytes that are not a stored dataset instead of guessing."""
    with pytest.raises(NotStorable, match="not a stored dataset"):
        decode(b"not arrow")
    assert FORMAT == "arrow-ipc-zstd-1"


def test_the_blob_is_compressed_arrow_without_pickle():
    """The blob is an Arrow IPC stream pyarrow reads by itself; repetitive data shrinks."""
    x = pd.DataFrame({"a": np.zeros(100_000), "b": np.arange(100_000) % 3})
    stored = encode(x, pd.Series(np.ones(100_000)))
    table = pa.ipc.open_stream(pa.py_buffer(stored.blob)).read_all()
    assert table.column_names == ["x.0", "x.1", "y.0"]
    assert len(stored.blob) < stored.raw_bytes / 20
    assert b"pickle" not in stored.blob and b"\x80\x04\x95" not in stored.blob


def test_digest_tells_apart_exactly_what_differs():
    """The digest is 64 hex, equal for equal data and different for each kind of change."""
    x = pd.DataFrame({"f": [0.5, -1.25, 3.0], "i": [1, -2, 3], "s": ["a", "b", "c"]})
    y = pd.Series([1.5, 2.5, 3.5], name="t")
    base = content_digest(x, y)
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert base == content_digest(x.copy(), y.copy())
    masked = pd.array([1, None], dtype="Int64")
    other = masked.copy()
    other._data[1] = 99  # a value under the mask is no value
    assert content_digest(pd.DataFrame({"a": masked}), None) == content_digest(
        pd.DataFrame({"a": other}), None
    )
    variants = [
        (x.assign(f=[0.5, -1.25, 3.0000000000000004]), y),
        (x.assign(f=[0.5, -1.25, -0.0]), y),
        (x.assign(s=["a", "b", "d"]), y),
        (x.rename(columns={"i": "j"}), y),
        (x[["i", "f", "s"]], y),
        (x.assign(i=[1.0, -2.0, 3.0]), y),
        (x.set_axis([0, 1, 2]), y),
        (x.set_axis(pd.Index([0, 1, 2], name="n")), y),
        (x.set_axis(pd.Index(["f", "i", "s"], dtype=object), axis=1), y),
        (x, y.rename(None)),
        (x, y.to_frame()),
        (x, None),
        (x.assign(s=pd.Series(["a", "b", "c"], dtype="string")), y),
        (x.assign(s=pd.Series(["a", None, "c"], dtype=object)), y),
        (x.assign(s=pd.Series(["a", np.nan, "c"], dtype=object)), y),
        (x.assign(s=pd.Series(["a", "None", "c"], dtype=object)), y),
        (x.assign(i=pd.Series([1, "-2", 3], dtype=object)), y),
        (x.assign(i=pd.Series([1, -2, 3], dtype=object)), y),
        (x.assign(s=pd.Categorical(["a", "b", "c"])), y),
        (x.assign(s=pd.Categorical(["a", "b", "c"], categories=["c", "b", "a"])), y),
    ]
    digests = [content_digest(a, b) for a, b in variants]
    assert len({base, *digests}) == len(variants) + 1
    numeric = pd.DataFrame({0: [1.0]})
    as_text = numeric.set_axis(["0"], axis=1)
    assert content_digest(numeric, None) != content_digest(as_text, None)


@pytest.mark.parametrize(
    "name",
    [
        "floats",
        "exact",
        "str",
        "mixed",
        "numeric-names",
        "unicode-names",
        "string-index",
        "int64-extremes",
    ],
)
@pytest.mark.parametrize("target", list(TARGETS))
def test_json_answer_sent_back_decodes_to_the_same_frames(name, target):
    """x and y of the JSON answer, sent back as a split body, decode to equal frames;
    floats keep every digit."""
    pair = decoded(FRAMES[name], "split", TARGETS[target](FRAMES[name]))
    assert pair is not None
    x, y = pair
    answer = orjson.loads(dumps(json_answer(x, y)))
    assert answer["orient"] == "split" and set(answer) == {"x", "y", "orient"}
    rows, back_y = decode_training(
        answer["x"], answer["y"], "split", max_rows=100, max_columns=1000
    )
    same(x, rows.frame)
    same(y, back_y)


def test_json_answer_keeps_a_default_index_default():
    """Rows 0..n-1 stay a RangeIndex through the answer, and pandas reads the answer too."""
    x = pd.DataFrame({"a": [0.1 + 0.2, 2.0]})
    answer = orjson.loads(dumps(json_answer(x, pd.Series([1, 2]))))
    assert "index" not in answer["x"] and answer["x"]["data"][0] == [0.30000000000000004]
    rows, y = decode_training(answer["x"], answer["y"], "split", max_rows=10, max_columns=10)
    same(x, rows.frame)
    same(pd.Series([1, 2]), y)
    import io

    read = pd.read_json(io.StringIO(orjson.dumps(answer["x"]).decode()), orient="split")
    assert read.shape == (2, 1)


def _fit_body(blob: bytes):
    """x and y as an Arrow fit body with `?target=` from the answer's metadata gives them."""
    targets = orjson.loads(
        pa.ipc.open_stream(pa.py_buffer(blob)).schema.metadata[b"mlserver.targets"]
    )
    rows = decode_bulk(blob, "arrow")
    if not targets:
        return rows.frame, None, targets
    x, y = split_target(rows.frame, ",".join(targets))
    return x, y, targets


def test_arrow_answer_is_a_fit_body_again():
    """The Arrow answer, sent back with `?target=` naming its targets, gives x and y."""
    x = pd.DataFrame({"a": [0.1 + 0.2, 2.0, 3.0], "b": [1.0, np.nan, 3.0]})
    y = pd.Series([0, 1, 0], name="label")
    back_x, back_y, targets = _fit_body(arrow_answer(x, y))
    assert targets == ["label"]
    same(x, back_x)
    same(y, back_y)
    mixed = pd.DataFrame({"p": [1.5, 2.5], "q": ["p", "q"]}, index=pd.Index([7, 8], name="id"))
    two = pd.DataFrame({"t": [1, 2], "u": [0.5, 1.5]}, index=mixed.index)
    back_x, back_y, targets = _fit_body(arrow_answer(mixed, two))
    assert targets == ["t", "u"]
    same(mixed, back_x)
    same(two, back_y)
    back_x, back_y, targets = _fit_body(arrow_answer(x, None))
    assert targets == [] and back_y is None
    same(x, back_x)


def test_arrow_answer_renames_a_target_an_x_column_shares():
    """A y named like an x column, or unnamed, gets a name of its own, listed in the
    metadata: x comes back whole and y under that name."""
    x = pd.DataFrame({"y": [1.0, 2.0], "label": [3.0, 4.0], "label_target": [5.0, 6.0]})
    _, unnamed, targets = _fit_body(arrow_answer(x, pd.Series([0, 1])))
    assert targets == ["y_target"] and unnamed.tolist() == [0, 1]
    back_x, back_y, targets = _fit_body(arrow_answer(x, pd.Series([1, 0], name="label")))
    assert targets == ["label_target_2"]
    same(x, back_x)
    assert back_y.tolist() == [1, 0]
    _, _, targets = _fit_body(arrow_answer(x, pd.Series([1, 0], name="a, b")))
    assert targets == ["a_ b_target"]
