"""mlserver.frames against real pandas: every orient, exact floats, the schema and data keys."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import orjson
import pandas as pd
import pytest

from mlserver.errors import InvalidPayload, SchemaMismatch
from mlserver.frames.encode import encode_frame
from mlserver.frames.json import LAZY_BODY_BYTES, LazyJSON
from mlserver.frames.keys import name_key, training_key
from mlserver.frames.orients import ORIENTS, align_target, decode_frame, decode_target
from mlserver.frames.rows import Rows
from mlserver.frames.schema import Schema
from mlserver.http.body import loads_body

EXACT = [0.1 + 0.2, 1 / 3, 1e-300, 123456789.123456789]
LABELLED = [o for o in ORIENTS if o != "values"]  # orients that carry column names
FORMS = ["text", "bytes", "value"]


def mixed() -> pd.DataFrame:
    return pd.DataFrame(
        {"f": [0.5, -1.25, 3.0], "i": [1, -2, 3], "s": ["a", "b", "c"]}, index=[10, 11, 12]
    )


def send(text: str, form: str) -> Any:
    """`text` as a client may send it: the string, its UTF-8 bytes, or the parsed JSON value."""
    return {"text": text, "bytes": text.encode(), "value": orjson.loads(text)}[form]


def floats(value: Any) -> list[float]:
    """Every float inside a JSON value."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats(v)]
    return [value] if isinstance(value, float) else []


def key(frame: pd.DataFrame, y: Any = None, mod: Any = None, alg: Any = None) -> str:
    return training_key(frame, y, mod or {}, alg or {})


# -- decode_frame / encode_frame ---------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("orient", ORIENTS)
def test_decode_frame_every_orient(orient: str, form: str) -> None:
    """Every orient, as text, bytes or value, decodes to the frame pandas itself reads back."""
    frame = mixed()
    text = frame.to_json(orient=orient)
    table = decode_frame(send(text, form), orient)
    assert isinstance(table, Rows)
    assert (table.orient, table.as_string) == (orient, form != "value")
    pd.testing.assert_frame_equal(table.frame, pd.read_json(io.StringIO(text), orient=orient))
    expected = frame.reset_index(drop=True) if orient in ("records", "values") else frame
    labels = [0, 1, 2] if orient == "values" else ["f", "i", "s"]  # values drops the names
    pd.testing.assert_frame_equal(table.frame, expected.set_axis(labels, axis=1))


@pytest.mark.parametrize("orient", ORIENTS)
def test_exact_floats_round_trip(orient: str) -> None:
    """float64 values survive encode_frame -> orjson text -> decode_frame bit for bit."""
    frame = pd.DataFrame({"a": EXACT, "b": EXACT[::-1]}, index=[10, 11, 12, 13])
    text = orjson.dumps(encode_frame(frame, orient))
    assert b"0.30000000000000004" in text and b"123456789.12345679" in text
    assert sorted(floats(orjson.loads(text))) == sorted(EXACT * 2)
    decoded = decode_frame(text, orient).frame
    assert decoded.to_numpy().tolist() == frame.to_numpy().tolist()


@pytest.mark.parametrize("orient", ORIENTS)
def test_encode_frame_matches_pandas(orient: str) -> None:
    """encode_frame holds what to_json(double_precision=15) holds, and read_json reads it back."""
    frame = mixed()
    value = encode_frame(frame, orient)
    expected = orjson.loads(frame.to_json(orient=orient, double_precision=15))
    if orient == "table":
        assert value["data"] == expected["data"]
        assert value["schema"]["fields"] == expected["schema"]["fields"]
    else:
        assert value == expected
    back = pd.read_json(io.StringIO(orjson.dumps(value).decode()), orient=orient)
    reference = pd.read_json(io.StringIO(frame.to_json(orient=orient)), orient=orient)
    pd.testing.assert_frame_equal(back, reference)
    if orient not in ("records", "values"):
        pd.testing.assert_frame_equal(back, frame)


@pytest.mark.parametrize("orient", [o for o in ORIENTS if o != "table"])
def test_encode_frame_positional_labels(orient: str) -> None:
    """A frame decoded from orient values (integer labels) encodes as pandas would encode it."""
    frame = decode_frame(mixed().to_json(orient="values"), "values").frame
    value = encode_frame(frame, orient)
    assert value == orjson.loads(frame.to_json(orient=orient, double_precision=15))
    pd.testing.assert_frame_equal(decode_frame(orjson.dumps(value), orient).frame, frame)


@pytest.mark.parametrize("orient", ["columns", "split", "records", "index"])
@pytest.mark.parametrize(
    ("labels", "expected"),
    [(["1", "2"], [1, 2]), (["-1", "0"], [-1, 0]), (["1", "a"], ["1", "a"])],
)
def test_integer_like_labels(orient: str, labels: list[str], expected: list[Any]) -> None:
    """Labels that all spell integers become int64 like read_json's convert_axes; mixed stay."""
    text = pd.DataFrame([[1.5, 2.5]], columns=labels, index=["7"]).to_json(orient=orient)
    frame = decode_frame(text, orient).frame
    assert frame.columns.tolist() == expected
    assert (frame.columns.dtype == "int64") is isinstance(expected[0], int)
    reference = pd.read_json(io.StringIO(text), orient=orient)
    pd.testing.assert_index_equal(frame.columns, reference.columns)
    if orient != "records":
        assert frame.index.tolist() == [7]


# -- decode_target / align_target --------------------------------------------------------------


@pytest.mark.parametrize("orient", ORIENTS)
def test_decode_target_series(orient: str) -> None:
    """A Series' own to_json decodes to a Series with its values, labels and (if sent) name."""
    series = pd.Series([1.5, -2.5, 3.25], index=[10, 11, 12], name="t")
    target = decode_target(series.to_json(orient=orient), orient)
    assert isinstance(target, pd.Series)
    assert target.tolist() == series.tolist()
    keeps_index = orient not in ("records", "values")
    assert target.index.tolist() == ([10, 11, 12] if keeps_index else [0, 1, 2])
    if orient in ("split", "table"):
        assert target.name == "t"


@pytest.mark.parametrize("orient", ORIENTS)
def test_decode_target_one_column_frame_is_series(orient: str) -> None:
    """A one-column DataFrame becomes a Series named after its column (0 when unnamed)."""
    frame = pd.DataFrame({"t": [1.5, -2.5, 3.25]}, index=[10, 11, 12])
    target = decode_target(frame.to_json(orient=orient), orient)
    assert isinstance(target, pd.Series)
    assert target.name == (0 if orient == "values" else "t")
    assert target.tolist() == [1.5, -2.5, 3.25]


@pytest.mark.parametrize("orient", ORIENTS)
def test_decode_target_two_columns_stay_frame(orient: str) -> None:
    """A two-column DataFrame stays a DataFrame equal to decode_frame's."""
    text = mixed()[["f", "i"]].to_json(orient=orient)
    target = decode_target(text, orient)
    assert isinstance(target, pd.DataFrame)
    pd.testing.assert_frame_equal(target, decode_frame(text, orient).frame)


def test_align_target_by_label() -> None:
    """The same labels in another order are realigned to x's row order."""
    x = mixed()
    y = pd.Series([12.0, 10.0, 11.0], index=[12, 10, 11], name="y")
    aligned = align_target(x, y)
    assert aligned.index.tolist() == [10, 11, 12]
    assert aligned.tolist() == [10.0, 11.0, 12.0]


def test_align_target_by_position() -> None:
    """Different labels fall back to position and take x's index."""
    x = mixed()
    y = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
    aligned = align_target(x, y)
    assert aligned.index.tolist() == [10, 11, 12]
    assert aligned["a"].tolist() == [1, 2, 3]


def test_align_target_length_mismatch() -> None:
    """A y with a different number of rows raises InvalidPayload naming y."""
    with pytest.raises(InvalidPayload, match=r"3 rows but y has 2") as info:
        align_target(mixed(), pd.Series([1, 2]))
    assert info.value.parameter == "y"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "orient", "parameter", "message"),
    [
        ('{"a": {"0": 1', "columns", "x", r"^x: not valid JSON text"),
        (b"\xff", "split", "x", r"^x: not valid JSON text"),
        ([[1, 2]], "columns", "x", r"orient 'columns' expects an object of objects"),
        ({"a": [1, 2]}, "columns", "x", r"orient 'columns' expects an object of objects"),
        ([1, 2], "index", "x", r"orient 'index' expects an object of objects, one per row"),
        ({"0": {"a": 1}}, "values", "x", r"orient 'values' expects a list of rows"),
        ({"columns": ["a"], "index": [0]}, "split", "x", r"orient 'split' expects an object"),
        ({"data": [1, 2]}, "split", "x", r"'split' expects the rows as lists"),
        ({"data": [[1]], "index": [0, 1]}, "split", "x", r"\"index\" with one label per row"),
        ({"columns": ["a", "b"], "data": [[1]]}, "split", "x", r"^x: .*columns"),
        ([1, 2], "records", "x", r"orient 'records' expects a list of objects"),
        ({"data": [{"a": 1}]}, "table", "x", r"orient 'table' expects"),
        ({"a": {"0": 1}}, "bogus", "orient", r"orient must be one of columns, .*got 'bogus'"),
        ("{}", "columns", "x", r"x has no rows or no columns"),
        ({"a": {}}, "columns", "x", r"x has no rows or no columns"),
        ([], "records", "x", r"x has no rows or no columns"),
        ([[]], "values", "x", r"x has no rows or no columns"),
        (None, "columns", "x", r"missing parameter 'x'"),
    ],
)
def test_decode_frame_errors(value: Any, orient: str, parameter: str, message: str) -> None:
    """Malformed, mis-shaped, empty or missing x raises InvalidPayload naming the parameter."""
    with pytest.raises(InvalidPayload, match=message) as info:
        decode_frame(value, orient)
    assert info.value.parameter == parameter


@pytest.mark.parametrize(
    ("value", "orient", "parameter", "message"),
    [
        ("[1, 2", "records", "y", r"^y: not valid JSON text"),
        (None, "columns", "y", r"missing parameter 'y'"),
        ({}, "columns", "y", r"y has no rows"),
        ({"name": "t", "data": []}, "split", "y", r"y has no rows"),
        (5, "columns", "y", r"^y: orient 'columns' expects"),
        ([1, 2], "bogus", "orient", r"got 'bogus'"),
    ],
)
def test_decode_target_errors(value: Any, orient: str, parameter: str, message: str) -> None:
    """Malformed, empty or missing y raises InvalidPayload naming the parameter."""
    with pytest.raises(InvalidPayload, match=message) as info:
        decode_target(value, orient)
    assert info.value.parameter == parameter


def test_encode_frame_unknown_orient() -> None:
    """encode_frame rejects an unknown orient with InvalidPayload naming orient."""
    with pytest.raises(InvalidPayload, match="got 'bogus'") as info:
        encode_frame(mixed(), "bogus")
    assert info.value.parameter == "orient"


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "orients"),
    [(["f", "i", "s"], LABELLED), ([0, 1, 2], [o for o in ORIENTS if o != "table"])],
    ids=["named", "positional"],
)
def test_training_key_same_for_every_orient_and_form(columns: list[Any], orients: list[str]):
    """The same data gives one key whatever orient and form (text, bytes, value) it came in."""
    frame = mixed().reset_index(drop=True).set_axis(columns, axis=1)
    keys = {
        key(decode_frame(send(frame.to_json(orient=o), form), o).frame)
        for o in orients
        for form in FORMS
    }
    assert keys == {key(frame)}


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(f=[0.5, -1.25, 3.5]),
        lambda f: f.assign(s=["a", "b", "d"]),
        lambda f: f.rename(columns={"i": "j"}),
        lambda f: f[["i", "f", "s"]],
        lambda f: f.assign(i=[1.0, -2.0, 3.0]),
        lambda f: f.set_axis([10, 11, 13]),
    ],
    ids=["float", "string", "rename", "reorder", "dtype", "index"],
)
def test_training_key_changes_with_x(change) -> None:
    """Changing a value, a label, the column order, a dtype or the index changes the key."""
    assert key(change(mixed())) != key(mixed())


def test_training_key_kwargs_and_target() -> None:
    """Kwargs order does not matter; which kwargs, and y's values and name, do."""
    x, y = mixed(), pd.Series([1.5, 2.5, 3.5], index=[10, 11, 12], name="t")
    base = key(x, y, {"a": 1, "b": {"c": 2, "d": 3}}, {"e": [1, 2]})
    assert base == key(x, y, {"b": {"d": 3, "c": 2}, "a": 1}, {"e": [1, 2]})
    assert base == key(mixed(), y.copy(), {"a": 1, "b": {"c": 2, "d": 3}}, {"e": [1, 2]})
    assert base != key(x, y, {"a": 1, "b": {"c": 2, "d": 3}}, {"e": [2, 1]})
    assert base != key(x, y, {}, {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]})
    variants = [key(x, y.rename("u")), key(x, y.to_frame()), key(x, y * 2), key(x)]
    assert len({key(x, y), *variants}) == 5
    assert len({key(x), key(x, mod={"alpha": 1}), key(x, alg={"alpha": 1})}) == 3
    assert re.fullmatch(r"[0-9a-f]{32}", base)


def test_name_key() -> None:
    """name_key is deterministic 32-hex, differs between names and from the data key."""
    assert name_key("iris") == name_key("iris")
    assert name_key("iris") != name_key("iris2")
    assert re.fullmatch(r"[0-9a-f]{32}", name_key("iris"))
    assert name_key("iris") not in {key(mixed()), key(pd.DataFrame({"iris": [1]}))}


# -- Schema ------------------------------------------------------------------------------------


def test_schema_round_trip() -> None:
    """Schema.of -> to_json -> JSON text -> from_json gives the same schema."""
    schema = Schema.of(mixed())
    assert schema.columns == ("f", "i", "s")
    assert schema.dtypes[:2] == ("float64", "int64")
    assert schema.to_json()[0] == {"name": "f", "dtype": "float64"}
    assert Schema.from_json(orjson.loads(orjson.dumps(schema.to_json()))) == schema
    positional = Schema.of(decode_frame([[1.5, 2]], "values").frame)
    assert Schema.from_json(orjson.loads(orjson.dumps(positional.to_json()))) == positional


def test_schema_conform_reorders_and_renames() -> None:
    """conform puts columns in training order; positional frames are named by position."""
    frame = mixed()
    schema = Schema.of(frame)
    pd.testing.assert_frame_equal(schema.conform(frame[["s", "f", "i"]]), frame)
    values = decode_frame(frame.to_json(orient="values"), "values").frame
    conformed = schema.conform(values, positional=True)
    pd.testing.assert_frame_equal(conformed, frame.reset_index(drop=True))


@pytest.mark.parametrize(
    ("frame", "missing", "unexpected"),
    [
        (mixed().drop(columns="i"), ["i"], []),
        (mixed().assign(extra=1), [], ["extra"]),
        (mixed().rename(columns={"s": "t"}), ["s"], ["t"]),
    ],
)
def test_schema_conform_column_mismatch(frame, missing, unexpected) -> None:
    """Missing/unexpected columns raise SchemaMismatch listing and naming them."""
    with pytest.raises(SchemaMismatch) as info:
        Schema.of(mixed()).conform(frame)
    assert (info.value.missing, info.value.unexpected) == (missing, unexpected)
    for name in missing:
        assert re.search(rf"missing columns .*'{name}'", str(info.value))
    for name in unexpected:
        assert re.search(rf"unexpected columns .*'{name}'", str(info.value))


def test_schema_conform_positional_wrong_width() -> None:
    """A values frame with too few columns cannot be matched by position."""
    values = decode_frame([[0.5, 1]], "values").frame
    with pytest.raises(SchemaMismatch, match="missing columns 'f', 'i', 's'") as info:
        Schema.of(mixed()).conform(values, positional=True)
    assert (info.value.missing, info.value.unexpected) == (["f", "i", "s"], ["0", "1"])


def test_schema_conform_duplicate_columns() -> None:
    """A frame repeating a training column raises SchemaMismatch."""
    frame = pd.concat([mixed(), mixed()[["f"]]], axis=1)
    with pytest.raises(SchemaMismatch, match="duplicate"):
        Schema.of(mixed()).conform(frame)


def test_schema_conform_wrong_type() -> None:
    """A string column where a numeric one was trained raises SchemaMismatch naming it."""
    with pytest.raises(SchemaMismatch, match=r"'i' is .*trained as int64"):
        Schema.of(mixed()).conform(mixed().assign(i=["1", "x", "3"]))


def test_schema_conform_casts_lossless_numbers() -> None:
    """Integral floats go back to int64, ints to float64; fractional floats are not truncated."""
    schema = Schema.of(mixed())
    conformed = schema.conform(mixed().assign(i=[1.0, -2.0, 3.0], f=[1, 2, 3]))
    assert conformed["i"].dtype == "int64" and conformed["i"].tolist() == [1, -2, 3]
    assert conformed["f"].dtype == "float64" and conformed["f"].tolist() == [1.0, 2.0, 3.0]
    assert schema.conform(mixed().assign(i=[1.5, 2.0, 3.0]))["i"].tolist() == [1.5, 2.0, 3.0]


# -- edge cases that once escaped as crashes or silent changes ---------------------------------


def test_labels_beyond_int64_stay_strings() -> None:
    """An integer-like label too big for int64 is kept as its string instead of crashing."""
    frame = decode_frame({"99999999999999999999": {"0": 1.5}}, "columns").frame
    assert list(frame.columns) == ["99999999999999999999"] and list(frame.index) == [0]


@pytest.mark.parametrize("columns", [5, "ab", {"a": 1}])
def test_split_columns_must_be_a_list(columns: Any) -> None:
    """A split "columns" that is not a list is a 400-style InvalidPayload naming x."""
    with pytest.raises(InvalidPayload, match="columns") as error:
        decode_frame({"columns": columns, "data": [[1, 2]]}, "split")
    assert error.value.parameter == "x"


@pytest.mark.parametrize(
    ("value", "orient"),
    [([[1, 2], [3]], "values"), ({"columns": ["a", "b"], "data": [[1, 2], [3]]}, "split")],
)
def test_ragged_rows_are_refused(value: Any, orient: str) -> None:
    """Rows of different lengths raise InvalidPayload instead of becoming NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 warns (Pandas4Warning) and pads
        with pytest.raises(InvalidPayload):
            decode_frame(value, orient)


def test_table_keeps_integer_column_labels() -> None:
    """A frame with integer column labels survives orient table like every other orient."""
    frame = pd.DataFrame({0: [0.5, 1.5], 1: [2.5, 3.5]})
    decoded = decode_frame(frame.to_json(orient="table"), "table").frame
    assert decoded.to_numpy().tolist() == [[0.5, 2.5], [1.5, 3.5]]
    pd.testing.assert_frame_equal(decoded, frame)


def test_table_converts_integer_like_labels_like_other_orients() -> None:
    """Orient table gives the same frame (and key) as orient columns for labels "1", "2"."""
    frame = pd.DataFrame({"1": [0.5, 1.5], "2": [2.5, 3.5]}, index=["10", "11"])
    table = decode_frame(frame.to_json(orient="table"), "table").frame
    columns = decode_frame(frame.to_json(orient="columns"), "columns").frame
    assert key(table) == key(columns)


def test_table_takes_subnormal_floats() -> None:
    """A subnormal float64 (5e-324) decodes in orient table as it does in orient split."""
    frame = pd.DataFrame({"a": [5e-324, 1.5]})
    decoded = decode_frame(orjson.dumps(encode_frame(frame, "table")), "table").frame
    assert decoded["a"].tolist() == [5e-324, 1.5]


@pytest.mark.parametrize(
    ("value", "orient"),
    [({"name": "t", "index": [1, 2], "data": [1.0, 2.0, 3.0]}, "split"), ([{}, {}], "records")],
    ids=["split-index-wrong-length", "rows-without-columns"],
)
def test_malformed_targets_are_refused(value: Any, orient: str) -> None:
    """A y whose index does not fit its data, or with no columns, raises InvalidPayload."""
    with pytest.raises(InvalidPayload):
        decode_target(value, orient)


# -- the numeric fast path ----------------------------------------------------------------------


@pytest.mark.parametrize("orient", ["split", "values", "records"])
def test_numeric_fast_path_equals_the_general_path_after_conform(orient: str) -> None:
    """With an all-numeric schema, the fast path gives what decode + conform give (as float64)."""
    trained = pd.DataFrame({"a": [1.5, 2.5], "b": [3, 4], "c": [0.25, -1.0]}, index=[7, 9])
    schema = Schema.of(trained)
    given = trained[["c", "a", "b"]] if orient != "values" else trained
    value = orjson.loads(given.to_json(orient=orient))
    fast = decode_frame(value, orient, schema=schema)
    slow = schema.conform(decode_frame(value, orient).frame, positional=orient == "values")
    assert fast.conformed and not decode_frame(value, orient).conformed
    pd.testing.assert_frame_equal(fast.frame, slow.astype("float64"), check_column_type=False)


def test_numeric_fast_path_steps_aside_for_anything_else() -> None:
    """Strings, unknown columns or a wrong width fall back to the general path and its errors."""
    schema = Schema.of(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    text = {"columns": ["a", "b"], "index": [0], "data": [["x", 1.0]]}
    assert not decode_frame(text, "split", schema=schema).conformed
    with pytest.raises(SchemaMismatch, match="'z'"):
        other = decode_frame({"columns": ["a", "z"], "data": [[1.0, 2.0]]}, "split", schema=schema)
        schema.conform(other.frame)
    assert not decode_frame([[1.0, 2.0, 3.0]], "values", schema=schema).conformed


# -- large bodies, parsed lazily -----------------------------------------------------------------

LAZY_SCHEMA = Schema.of(pd.DataFrame({"a": [1.0], "b": [2.0]}))


def lazily(value: Any, orient: str = "split") -> Rows | Exception:
    """decode_frame on `value` as a large body brings it: a LazyJSON from the body's text."""
    raw = orjson.dumps({"x": value, "orient": orient})
    raw += b" " * (LAZY_BODY_BYTES - len(raw))  # whitespace makes it large, nothing else
    body = loads_body(raw, lazy=True)
    assert isinstance(body["x"], LazyJSON) and body["orient"] == orient
    return decoded(body["x"], orient)


def decoded(value: Any, orient: str) -> Rows | Exception:
    try:
        return decode_frame(value, orient, schema=LAZY_SCHEMA)
    except Exception as exc:  # compared with the small body's outcome
        return exc


def outcome(result: Rows | Exception) -> Any:
    if isinstance(result, Exception):
        return type(result), str(result)
    split = result.frame.to_dict(orient="split")
    return result.conformed, result.as_string, orjson.dumps(split)  # NaN as null: comparable


LAZY_CASES = {
    "plain": {"columns": ["a", "b"], "index": [0, 1], "data": [[1.5, 2.0], [0.1, 3]]},
    "reordered, labelled": {"columns": ["b", "a"], "index": [7, "r"], "data": [[1, 2], [3, 4]]},
    "no index": {"columns": ["a", "b"], "data": [[1, 2]]},
    "nested cell": {"columns": ["a", "b"], "data": [[1, [2]], [3, 4]]},
    "nested pair": {"columns": ["a", "b"], "data": [[1, []], [3, [4, 5]]]},
    "ragged": {"columns": ["a", "b"], "data": [[1, 2, 3], [4]]},
    "null": {"columns": ["a", "b"], "data": [[1, None], [3, 4]]},
    "string": {"columns": ["a", "b"], "data": [[1, "2"], [3, 4]]},
    "boolean": {"columns": ["a", "b"], "data": [[1, True], [3, 4]]},
    "bracket label": {"columns": ["a", "b"], "index": ["[", "]"], "data": [[1, 2], [3, 4]]},
    "unknown column": {"columns": ["a", "z"], "data": [[1, 2]]},
    "extra key": {"columns": ["a", "b"], "data": [[1, 2]], "more": 1},
    "no rows": {"columns": ["a", "b"], "data": []},
}


@pytest.mark.parametrize("case", LAZY_CASES)
def test_lazy_split_decodes_as_a_small_body_does(case: str) -> None:
    """Whatever x holds, the lazy parse gives the same table, or the same error, as orjson;
    nested, ragged or non-numeric rows never slip through as numbers."""
    value = LAZY_CASES[case]
    assert outcome(lazily(value)) == outcome(decoded(value, "split"))


@pytest.mark.parametrize(
    "rows", [[[1, 2], [3, 4.5]], [[1, [2]], [3, 4]], [[1, 2, 3], [4]], [[1, None]]]
)
def test_lazy_values_decode_as_a_small_body_does(rows: list) -> None:
    """orient=values rows read lazily give the value or the error the eager decoder gives."""
    assert outcome(lazily(rows, "values")) == outcome(decoded(rows, "values"))


def test_lazy_text_and_other_parameters() -> None:
    """x as large pandas-JSON text is read lazily and answered as text; the other
    parameters come back as plain Python values; bad JSON is a ValueError."""
    frame = pd.DataFrame({"a": [i / 3 for i in range(5000)], "b": [i * 2.0 for i in range(5000)]})
    text = frame.to_json(orient="split", double_precision=15)
    assert len(text) > LAZY_BODY_BYTES
    table = decode_frame(text, "split", schema=LAZY_SCHEMA)
    assert table.conformed and table.as_string
    assert table.array.tolist() == orjson.loads(text)["data"]
    body = loads_body(orjson.dumps({"x": [[1, 2]], "method": "predict", "k": [{"a": [1]}]}))
    assert body == {"x": [[1, 2]], "method": "predict", "k": [{"a": [1]}]}
    big = orjson.dumps({"x": [[1, 2]] * 20_000, "k": [{"a": [1]}], "n": None})
    lazy = loads_body(big, lazy=True)
    assert isinstance(lazy["x"], LazyJSON) and lazy["k"] == [{"a": [1]}] and lazy["n"] is None
    with pytest.raises(ValueError):
        loads_body(big[:-1], lazy=True)


def big_body(**parameters: Any) -> bytes:
    """A body above LAZY_BODY_BYTES: `parameters` plus a large numeric x."""
    raw = orjson.dumps({"x": [[1.5, 2.5]] * 8000, **parameters})
    assert len(raw) >= LAZY_BODY_BYTES
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        big_body()[:-1] + b', "x": [[3.0, 4.0]]}',  # a duplicate key: the last one counts
        big_body()[:-1] + b', "deep": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    ],
    ids=["duplicate key", "deep nesting"],
)
def test_lazy_bodies_read_as_orjson_reads_them(raw: bytes) -> None:
    """Where simdjson and orjson disagree, orjson decides: same value or same error."""
    try:
        expected: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        expected = ValueError
        assert isinstance(exc, ValueError)
    try:
        body = loads_body(raw, lazy=True)
        got: Any = {k: v.python() if isinstance(v, LazyJSON) else v for k, v in body.items()}
    except ValueError:
        got = ValueError
    assert got == expected


def test_a_large_body_with_an_integer_beyond_64_bits_is_refused() -> None:
    """simdjson refuses such a body and orjson would read the integer as a float: the
    fallback names it instead."""
    raw = big_body()[:-1] + b', "n": 123456789012345678901234567890}'
    with pytest.raises(InvalidPayload, match="123456789012345678901234567890"):
        loads_body(raw, lazy=True)


def test_a_byte_order_mark_is_refused_as_before() -> None:
    """A large body read lazily is refused with a ValueError when it starts with a UTF-8
    byte order mark, as orjson refuses a small one."""
    with pytest.raises(ValueError):
        loads_body(b"\xef\xbb\xbf" + big_body(), lazy=True)


def test_duplicate_keys_inside_a_lazy_x_read_as_orjson_reads_them() -> None:
    """A key repeated inside a lazily read x counts as orjson counts it: the last one wins."""
    value = {"columns": ["b", "a"], "data": [[1.0, 2.0]] * 3000}
    raw = orjson.dumps({"x": value})[:-2] + b', "columns": null}}'
    table = decode_frame(loads_body(raw, lazy=True)["x"], "split", schema=LAZY_SCHEMA)
    expected = decode_frame(orjson.loads(raw)["x"], "split", schema=LAZY_SCHEMA)
    assert table.array.tolist() == expected.array.tolist()  # by position: columns is null


def test_nested_cells_are_named_plainly() -> None:
    """A cell holding a list is refused with a message naming its column in plain words."""
    with pytest.raises(InvalidPayload, match=r"column 1 holds lists"):
        decode_frame([[1.0, [2.0]]], "values")


def test_the_training_key_of_given_data_is_pinned():
    """Keys of stored versions must stay what they were across releases."""
    x = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    y = pd.Series([0, 1], name="t")
    assert training_key(x, y, {"C": 1}, {}) == "814ae3ff9c2611dbcaa176ad27cb6d81"
