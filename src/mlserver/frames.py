"""pandas JSON in every orient <-> DataFrame/Series, the training schema, and data hashing.

`x` and `y` arrive either as the text `DataFrame.to_json(orient=...)` wrote or as the JSON value
itself. Both are parsed with orjson (exact float64, unlike `read_json`'s default parser) and built
into frames the way `pandas.read_json` would: labels that spell integers become integers, so the
same data gives the same frame, and the same key, whatever the orient or form it came in.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import json
import re
import struct
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import simdjson

from mlserver.errors import (
    InvalidPayload,
    SchemaMismatch,
    UnprocessableData,
    UnsupportedMediaType,
)

__all__ = [
    "ORIENTS",
    "Schema",
    "Table",
    "align_target",
    "decode_frame",
    "decode_target",
    "encode_array",
    "encode_arrow",
    "encode_arrow_array",
    "encode_frame",
    "name_key",
    "training_key",
]

ORIENTS = ("columns", "split", "records", "index", "values", "table")

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class Table:
    """A decoded `x`: its rows plus how they came, so the answer can go back the same way.

    Rows come either as a DataFrame, or as one float64 array: already in the training
    schema's column order (the numeric fast path, with `columns`), or, from an Arrow body, in
    the body's own order (with its column `names`). The frame is built only if asked for.
    """

    def __init__(
        self,
        frame: pd.DataFrame | None,
        orient: str,
        as_string: bool,
        *,
        array: np.ndarray | None = None,
        columns: pd.Index | None = None,
        names: list[str] | None = None,
        index: pd.Index | None = None,
    ) -> None:
        self.orient = orient
        self.as_string = as_string
        #: float64 rows, or None when the rows came as a general frame.
        self.array = array
        #: The body's column names of an array not yet in training order; else None.
        self.names = names
        #: The fast path's row labels; None stands for 0..n-1 (no Index built for it).
        self.given_index = index
        self._frame = frame
        self._columns = columns

    @property
    def conformed(self) -> bool:
        """The rows already have the training schema's columns, order and float64 data."""
        return self.array is not None and self.names is None

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape if self.array is not None else self.frame.shape  # type: ignore[return-value]

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            columns = self._columns if self.names is None else _axis(self.names, "x")
            # NOTE: column-major, as every frame pandas builds itself holds its values:
            # models that use BLAS round by layout, and answers must equal the model's own
            # on a frame of these rows bit for bit.
            self._frame = pd.DataFrame(
                np.asfortranarray(self.array),
                columns=columns,
                index=self.given_index,
                copy=False,
            )
        return self._frame


@dataclass(frozen=True)
class Schema:
    """Column labels and dtypes of the training features, stored with every version."""

    columns: tuple[Hashable, ...]
    dtypes: tuple[str, ...]

    @functools.cached_property
    def labels(self) -> pd.Index:
        """The columns as a ready Index.

        PERF: building an Index of strings per request costs more than the rest of a
        one-row decode (pandas 3 backs it with Arrow); one per version does.
        """
        return pd.Index(list(self.columns), dtype=object)

    @functools.cached_property
    def names(self) -> list[Hashable]:
        return list(self.columns)

    @functools.cached_property
    def numeric(self) -> bool:
        """All features numeric: such models take one float array."""
        return all(_is_numeric(t) for t in self.dtypes)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Schema:
        return cls(tuple(frame.columns), tuple(str(t) for t in frame.dtypes))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": c, "dtype": t} for c, t in zip(self.columns, self.dtypes, strict=True)]

    @classmethod
    def from_json(cls, fields: Sequence[Mapping[str, Any]]) -> Schema:
        return cls(tuple(f["name"] for f in fields), tuple(f["dtype"] for f in fields))

    def conform(self, frame: pd.DataFrame, positional: bool = False) -> pd.DataFrame:
        """`frame` with the training columns in training order and compatible dtypes.

        `positional` frames carry no column names (orient `values`): they are matched by
        position. Raises SchemaMismatch naming missing/unexpected columns or bad dtypes.
        """
        if positional and len(frame.columns) == len(self.columns):
            frame = frame.set_axis(list(self.columns), axis=1)
        if tuple(frame.columns) != self.columns:
            given = set(frame.columns)
            missing = [c for c in self.columns if c not in given]
            expected = set(self.columns)
            unexpected = [c for c in frame.columns if c not in expected]
            if missing or unexpected:
                parts = []
                if missing:
                    parts.append(f"missing columns {_names(missing)}")
                if unexpected:
                    parts.append(f"unexpected columns {_names(unexpected)}")
                raise SchemaMismatch(
                    "x does not match the training schema: " + "; ".join(parts),
                    missing=[str(c) for c in missing],
                    unexpected=[str(c) for c in unexpected],
                )
            if frame.columns.has_duplicates:
                raise SchemaMismatch("x has duplicate column names")
            frame = frame[list(self.columns)]
        return self._cast(frame)

    def _cast(self, frame: pd.DataFrame) -> pd.DataFrame:
        wrong = []
        casts = {}
        for column, trained, given in zip(self.columns, self.dtypes, frame.dtypes, strict=True):
            if str(given) == trained:
                continue
            trained_numeric = _is_numeric(trained)
            if _kind_of(trained) != _kind(given):
                # NOTE: an all-null column parses as float/object; let the model judge it.
                if not frame[column].isna().all():
                    wrong.append(f"{column!r} is {given}, trained as {trained}")
                continue
            if trained_numeric and _lossless(frame[column], trained):
                casts[column] = trained
        if wrong:
            raise SchemaMismatch("x has columns of the wrong type: " + "; ".join(wrong))
        return frame.astype(casts) if casts else frame


def _kind(dtype: Any) -> str:
    """What a column holds, as far as a model is concerned: numbers, datetimes, durations or
    text (strings, categories, mixed objects). Columns of another kind than in training are
    refused: a datetime where strings were trained would predict nonsense."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "text"


def _kind_of(dtype: str) -> str:
    """`_kind` of a dtype as stored in a schema; one this pandas cannot read counts as text."""
    try:
        return _kind(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return "text"


def _is_numeric(dtype: str) -> bool:
    try:
        return pd.api.types.is_numeric_dtype(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return False


def _lossless(column: pd.Series, dtype: str) -> bool:
    try:
        cast = column.astype(dtype)
    except (TypeError, ValueError):
        return False
    return bool((cast == column).all())


def _names(labels: Sequence[Hashable]) -> str:
    return ", ".join(repr(label) for label in labels)


# ---------------------------------------------------------------------------------------------
# Decoding


#: Bodies at least this large are parsed lazily (see `loads_body`).
LAZY_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class LazyJSON:
    """A JSON value parsed by simdjson but not yet turned into Python objects."""

    value: Any
    #: The JSON text it came from, and the key it sits under there (None: the whole text).
    source: bytes
    key: str | None
    #: How many "[" the source holds: what proves a table has no nested lists.
    brackets: int

    def python(self) -> Any:
        """The value as orjson reads it from the source: the general path's semantics
        (last of duplicate keys, big integers as floats), whatever simdjson made of it."""
        value = orjson.loads(self.source)
        return value if self.key is None else value[self.key]


def _simdjson(raw: bytes) -> Any:
    """simdjson's lazy document, or None where orjson is the one to read `raw` (invalid
    JSON, a byte-order mark, integers above 64 bits, deep nesting: orjson words the error
    or reads it the way it always has)."""
    if raw.startswith(codecs.BOM_UTF8):
        return None
    try:
        return simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # simdjson reports some failures as RuntimeError
        return None


def _distinct_keys(document: Any) -> list[str] | None:
    """An object's keys, or None if one repeats (simdjson would take the first value,
    orjson takes the last)."""
    keys = list(document.keys())
    return keys if len(set(keys)) == len(keys) else None


#: A run of 19 digits: the shortest text of an integer that may not fit in 64 bits (also
#: the digits of many a float's fraction, 0.0067527373888681685: see `_loads`).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


class _BigInteger(ValueError):
    pass


def _int64(text: str) -> int:
    number = int(text)
    if not _INT64_MIN <= number <= _UINT64_MAX:
        raise _BigInteger(text)
    return number


def _loads(raw: bytes | str, what: str, parameter: str | None = None) -> Any:
    """JSON text as orjson reads it, refusing integers beyond 64 bits, which orjson (like
    numpy and pandas) would turn into floats silently: a label 2**70 would become another
    number. Raises orjson.JSONDecodeError (a ValueError) for text that is not JSON."""
    value = orjson.loads(raw)
    text = raw.encode() if isinstance(raw, str) else raw
    # PERF: long digit runs are common in fractions; simdjson (~1 GB/s) reads the text
    # unless it holds such an integer, and only then does the slow exact check run.
    if _LONG_DIGITS.search(text) and _simdjson(text) is None:
        try:
            json.loads(text, parse_int=_int64)
        except _BigInteger as exc:
            raise InvalidPayload(
                f"{what} holds the integer {exc}, which does not fit in 64 bits; "
                "send it as a string (or a float, if rounding is acceptable)",
                parameter,
            ) from None
        except RecursionError:  # nested deeper than json can follow: nothing to prove
            pass
    return value


def loads_body(raw: bytes, lazy: bool = False) -> Any:
    """A JSON request body; with `lazy`, a large one's `x` stays a LazyJSON until its
    training schema is known, so a numeric table goes straight from the text into an array.

    PERF: 10k x 10 numbers: ~10 ms as Python lists then an array (orjson + numpy), ~4 ms
    straight into an array (simdjson). Raises ValueError for text that is not JSON.
    """
    document = _simdjson(raw) if lazy and len(raw) >= LAZY_BODY_BYTES else None
    if not isinstance(document, simdjson.Object) or (keys := _distinct_keys(document)) is None:
        return _loads(raw, "the request body")
    # NOTE: items() would convert every value; indexing keeps containers lazy.
    body = {name: document[name] for name in keys}
    return {
        name: LazyJSON(value, raw, name, raw.count(b"["))
        if name == "x" and isinstance(value, _CONTAINERS)
        else _plain(value)
        for name, value in body.items()
    }


_CONTAINERS = (simdjson.Object, simdjson.Array)


def _plain(value: Any) -> Any:
    """A lazily parsed JSON value as Python objects (anything else as it is)."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _lazy_table(lazy: LazyJSON, orient: str, schema: Schema, as_string: bool) -> Table | None:
    """The fast path for a lazily parsed numeric table (orient split or values): the numbers
    go from the text into one array; None when it is not a plain rectangle of numbers."""
    value, lists = lazy.value, 1
    if orient == "split" and isinstance(value, simdjson.Object):
        if (keys := _distinct_keys(value)) is None:
            return None
        parts = {name: value[name] for name in keys}
        rows = parts.pop("data", None)
        if set(parts) - {"columns", "index"} or not isinstance(rows, simdjson.Array):
            return None
        rest = {name: _plain(part) for name, part in parts.items()}
        lists += sum(isinstance(part, list) for part in rest.values())
    elif orient == "values" and isinstance(value, simdjson.Array):
        rows, rest = value, {}
    else:
        return None
    width = len(schema.columns)
    count = len(rows)
    # NOTE: as_buffer flattens nested lists, so the rectangle is proved first: the text has
    # one "[" per row and per list of labels, none more (a "[" inside a label or another
    # parameter only sends the table down the general path), and each row `width` values.
    if not count or lazy.brackets != count + lists:
        return None
    if any(not isinstance(row, simdjson.Array) or len(row) != width for row in rows):
        return None
    try:
        flat = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # null, strings, booleans, out-of-range numbers
        return None
    return _arranged(
        flat.reshape(count, width),
        rest.get("columns"),
        rest.get("index"),
        schema,
        as_string,
        orient,
    )


def _parse(value: Any, parameter: str) -> tuple[Any, bool]:
    """The JSON value of a parameter and whether it came as pandas-JSON text."""
    if isinstance(value, LazyJSON):
        return value.python(), False
    if isinstance(value, str | bytes):
        try:
            return _loads(value, parameter, parameter), True
        except orjson.JSONDecodeError as exc:
            raise InvalidPayload(f"{parameter}: not valid JSON text ({exc})", parameter) from None
    return value, False


def _label(label: Any) -> Any:
    if isinstance(label, str) and _INTEGER.fullmatch(label):
        number = int(label)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return label


def _axis(labels: Sequence[Any], parameter: str) -> pd.Index:
    """Labels as `read_json` would type them: integer-like strings become integers."""
    if not all(isinstance(label, str | int | float) for label in labels):
        raise InvalidPayload(f"{parameter}: labels must be strings or numbers", parameter)
    converted = [_label(label) for label in labels]
    if converted and all(
        type(label) is int and _INT64_MIN <= label <= _INT64_MAX for label in converted
    ):
        # PERF: from an int64 array, 4x cheaper than letting pandas infer from the list.
        return pd.Index(np.fromiter(converted, dtype=np.int64, count=len(converted)))
    return pd.Index(labels)


def _shape_error(parameter: str, orient: str, expected: str) -> InvalidPayload:
    return InvalidPayload(f"{parameter}: orient {orient!r} expects {expected}", parameter)


def _rows_frame(data: list[Any], columns: Any, orient: str, parameter: str) -> pd.DataFrame:
    """A frame from a list of equally long rows (split and values orients)."""
    if not all(isinstance(row, list) for row in data):
        raise _shape_error(parameter, orient, "the rows as lists")
    widths = {len(row) for row in data}
    if columns is not None:
        if not isinstance(columns, list):
            raise _shape_error(parameter, orient, '"columns" as a list of labels')
        widths.add(len(columns))
    if len(widths) > 1:
        raise InvalidPayload(
            f"{parameter}: rows and columns differ in length ({sorted(widths)})", parameter
        )
    return pd.DataFrame(data, columns=None if columns is None else _axis(columns, parameter))


# pandas' Table Schema types -> dtypes; "any" and unknown types are left to inference.
_TABLE_TYPES = {"integer": "int64", "number": "float64", "boolean": "bool"}
# Extension dtypes a field may name (`extDtype`), as `read_json(orient="table")` restores them.
_EXT_DTYPES = frozenset({"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32"})
_EXT_DTYPES |= {"UInt64", "Float32", "Float64", "boolean", "string", "str"}


def _typed(column: pd.Series, field: Mapping[str, Any], parameter: str) -> pd.Series:
    """A Table Schema column in the dtype its field names, as `read_json` types it, except
    where that would change values: a boolean or integer column with nulls stays nullable
    instead of turning nulls into False or failing."""
    kind = field.get("type")
    ext = field.get("extDtype")
    if kind == "duration":
        # NOTE: read_json cannot read these either ("can not yet read ISO-formatted
        # Timedelta data"); refuse rather than pass ISO text to a model as strings.
        raise InvalidPayload(
            f"{parameter}: column {field['name']!r} holds durations (timedelta), which "
            "orient 'table' cannot carry; send them as numbers (e.g. seconds)",
            parameter,
        )
    if kind == "datetime":
        values = pd.to_datetime(column, utc=True if "tz" in field else None).dt.as_unit("ns")
        return values.dt.tz_convert(str(field["tz"])) if "tz" in field else values
    if isinstance(ext, str) and ext in _EXT_DTYPES:
        return column.astype(ext)
    if kind == "any" and isinstance(field.get("constraints"), dict):
        categories = field["constraints"].get("enum")
        if isinstance(categories, list):
            ordered = field.get("ordered") is True
            return pd.Series(
                pd.Categorical(column, categories=categories, ordered=ordered),
                index=column.index,
                name=column.name,
            )
    if kind == "string":  # strings and mixed values as read_json leaves them, NaN for null
        return column.where(column.notna(), np.nan) if column.dtype == object else column
    if kind in _TABLE_TYPES and column.isna().any():
        return column.astype("boolean") if kind == "boolean" else column
    if kind in _TABLE_TYPES:
        return column.astype(_TABLE_TYPES[kind])
    return column


def _table_frame(value: Any, parameter: str) -> pd.DataFrame:
    """A frame from orient 'table', built from the parsed value.

    NOTE: `read_json(orient="table")` would re-parse the text with a float parser that rejects
    subnormals, and it loses integer column labels; the value is already parsed exactly.
    """
    schema = value.get("schema") if isinstance(value, dict) else None
    fields = schema.get("fields") if isinstance(schema, dict) else None
    data = value.get("data") if isinstance(value, dict) else None
    if (
        not isinstance(fields, list)
        or not all(isinstance(f, dict) and "name" in f for f in fields)
        or not isinstance(data, list)
        or not all(isinstance(row, dict) for row in data)
    ):
        raise _shape_error(parameter, "table", 'an object with "schema": {"fields"} and "data"')
    names = [str(f["name"]) for f in fields]
    frame = pd.DataFrame.from_records(data, columns=names) if data else pd.DataFrame(columns=names)
    for field, name in zip(fields, names, strict=True):
        try:
            frame[name] = _typed(frame[name], field, parameter)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidPayload(
                f"{parameter}: column {name!r} is not of type {field.get('type')} ({exc})",
                parameter,
            ) from None
    keys = schema.get("primaryKey") or []
    if not isinstance(keys, list) or not set(map(str, keys)) <= set(names):
        raise _shape_error(parameter, "table", '"primaryKey" naming fields')
    if keys:
        frame = frame.set_index([str(k) for k in keys])
        # pandas writes an unnamed index as "index" (or "level_N" for a MultiIndex level).
        frame.index.names = [
            None if n == "index" or str(n).startswith("level_") else n for n in frame.index.names
        ]
        if frame.index.nlevels == 1 and pd.api.types.is_string_dtype(frame.index.dtype):
            frame.index = _axis(list(frame.index), parameter).rename(frame.index.name)
    frame.columns = _axis(list(frame.columns), parameter)
    return frame


def _frame(value: Any, orient: str, parameter: str) -> pd.DataFrame:
    """A DataFrame from the parsed JSON of `DataFrame.to_json(orient=orient)`."""
    frame = _orient_frame(value, orient, parameter)
    return frame if orient == "table" else _bools_with_nulls(frame)


def _bools_with_nulls(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of booleans and nulls as float64 (1.0, 0.0, NaN), as `read_json` reads them
    (pandas writes a nullable boolean column that way), instead of an object column no
    estimator takes."""
    dtypes = frame.dtypes.tolist()
    for position in [i for i, dtype in enumerate(dtypes) if dtype == np.dtype("O")]:
        values = frame.iloc[:, position]
        present = values[values.notna()]
        if len(present) < len(values) and present.map(type).eq(bool).all():
            frame.isetitem(position, values.astype("float64"))
    return frame


def _orient_frame(value: Any, orient: str, parameter: str) -> pd.DataFrame:
    if orient == "split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise _shape_error(parameter, orient, 'an object with "columns", "index", "data"')
        frame = _rows_frame(value["data"], value.get("columns"), orient, parameter)
        index = value.get("index")
        if index is not None:
            if not isinstance(index, list) or len(index) != len(frame):
                raise _shape_error(parameter, orient, '"index" with one label per row')
            frame.index = _axis(index, parameter)
        return frame
    if orient == "records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise _shape_error(parameter, orient, "a list of objects, one per row")
        frame = pd.DataFrame(value)
        frame.columns = _axis(list(frame.columns), parameter)
        return frame
    if orient == "values":
        if not isinstance(value, list):
            raise _shape_error(parameter, orient, "a list of rows (lists)")
        return _rows_frame(value, None, orient, parameter)
    if orient in ("columns", "index"):
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            outer = "column" if orient == "columns" else "row"
            raise _shape_error(parameter, orient, f"an object of objects, one per {outer}")
        frame = pd.DataFrame.from_dict(value, orient=orient)
        frame.index = _axis(list(frame.index), parameter)
        frame.columns = _axis(list(frame.columns), parameter)
        return frame
    if orient == "table":
        return _table_frame(value, parameter)
    raise InvalidPayload(f"orient must be one of {', '.join(ORIENTS)}; got {orient!r}", "orient")


def _numeric_table(value: Any, orient: str, schema: Schema, as_string: bool) -> Table | None:
    """The fast path: rows -> one float64 array in training order, or None to take the
    general path (which also produces the error messages).

    PERF: building a frame column by column costs ~0.4 ms for one row; this ~0.04 ms, and
    no frame at all is built when the model takes the array itself.
    """
    columns, index = None, None
    if orient == "split" and isinstance(value, dict):
        rows, columns, index = value.get("data"), value.get("columns"), value.get("index")
    elif orient == "values":
        rows = value
    elif orient == "records" and isinstance(value, list) and value:
        columns = list(value[0]) if isinstance(value[0], dict) else None
        if columns is None or not all(
            isinstance(r, dict) and len(r) == len(columns) for r in value
        ):
            return None
        try:
            rows = [[r[c] for c in columns] for r in value]
        except KeyError:
            return None
    else:
        return None
    if not isinstance(rows, list) or not rows:
        return None
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):  # strings, ragged rows, nested values
        return None
    if array.ndim != 2 or array.shape[1] != len(schema.columns):
        return None
    return _arranged(array, columns, index, schema, as_string, orient)


def _arranged(
    array: np.ndarray, columns: Any, index: Any, schema: Schema, as_string: bool, orient: str
) -> Table | None:
    """Rows whose labels (if given) name the training columns, put in training order."""
    width = len(schema.columns)
    # PERF: labels as trained (the usual case) need no checks and no conversion.
    if columns is not None and columns != schema.names:
        if not isinstance(columns, list) or len(columns) != width:
            return None
        if not all(isinstance(label, str | int | float) for label in columns):
            return None
        labels = [_label(c) for c in columns]
        if labels != schema.names:
            position = {label: i for i, label in enumerate(labels)}
            if len(position) != width or set(position) != set(schema.columns):
                return None
            array = array[:, [position[c] for c in schema.columns]]
    if index is not None:
        if not isinstance(index, list) or len(index) != len(array):
            return None
        # PERF: the usual index (0..n-1) needs no Index: building one costs ~20-70 us.
        if _is_range(index):
            index = None
        elif all(isinstance(label, str | int | float) for label in index):
            index = _axis(index, "x")
        else:
            return None
    return Table(None, orient, as_string, array=array, columns=schema.labels, index=index)


def _float_table(table: Table, schema: Schema) -> Table | None:
    """Rows not yet in training order (all-float64, default index) as the fast path's array."""
    if table.array is not None:  # an Arrow body's columns, never framed
        array, names = table.array, table.names
    else:
        frame = table.frame
        if not default_index(frame.index) or any(t != np.float64 for t in frame.dtypes.tolist()):
            return None
        array, names = frame.to_numpy(), frame.columns.tolist()
    if array.shape[1] != len(schema.columns):
        return None
    # Orient "values" matches columns by position, as Schema.conform does.
    columns = None if table.orient == "values" else names
    return _arranged(array, columns, None, schema, table.as_string, table.orient)


def default_index(index: pd.Index) -> bool:
    """The index pandas gives a frame by default: 0..n-1, unnamed."""
    return (
        isinstance(index, pd.RangeIndex)
        and (index.start, index.step) == (0, 1)
        and index.name is None
    )


def _is_range(labels: list[Any]) -> bool:
    """Labels 0..n-1, all ints (0.0 and True compare equal to 0 and 1, but are not)."""
    return labels == list(range(len(labels))) and set(map(type, labels)) <= {int}


def _checked(data: pd.DataFrame | pd.Series, parameter: str) -> None:
    """Refuse what no estimator takes and what would break hashing: nested cells, duplicates."""
    frame = data.to_frame() if isinstance(data, pd.Series) else data
    if frame.columns.has_duplicates:
        duplicated = _names(list(dict.fromkeys(frame.columns[frame.columns.duplicated()])))
        raise InvalidPayload(f"{parameter} has duplicate columns {duplicated}", parameter)
    # PERF: only object columns can hold lists or objects; looking up each column costs.
    dtypes = frame.dtypes.tolist()
    for position in [i for i, dtype in enumerate(dtypes) if dtype == np.dtype("O")]:
        column = frame.columns.tolist()[position]
        values = frame.iloc[:, position]
        if values.map(lambda v: isinstance(v, list | dict)).any():
            raise InvalidPayload(
                f"{parameter}: column {column!r} holds lists or objects; cells must be "
                "numbers, strings, booleans or null",
                parameter,
            )


def decode_frame(
    value: Any, orient: str, parameter: str = "x", schema: Schema | None = None
) -> Table:
    """Decode `x` (pandas-JSON text or the JSON value) into a DataFrame.

    With the training `schema` of an all-numeric model, plain tables go straight into one
    float64 array in training order; anything else takes the general path.
    """
    if isinstance(value, Table):  # already decoded, e.g. from an Arrow body
        if schema is not None and schema.numeric and not value.conformed:
            return _float_table(value, schema) or value
        return value
    if value is None:
        raise InvalidPayload(f"missing parameter {parameter!r}", parameter)
    if schema is not None and schema.numeric and orient in ("split", "values"):
        lazy, as_string = value, False
        if isinstance(value, str | bytes) and len(value) >= LAZY_BODY_BYTES:
            text = value.encode() if isinstance(value, str) else value
            document = _simdjson(text)  # pandas-JSON text
            if isinstance(document, _CONTAINERS):
                lazy, as_string = LazyJSON(document, text, None, text.count(b"[")), True
        if isinstance(lazy, LazyJSON):
            fast = _lazy_table(lazy, orient, schema, as_string)
            if fast is not None:
                return fast
    parsed, as_string = _parse(value, parameter)
    if schema is not None and schema.numeric:
        fast = _numeric_table(parsed, orient, schema, as_string)
        if fast is not None:
            return fast
    frame = _frame(parsed, orient, parameter)
    if frame.empty:
        raise InvalidPayload(f"{parameter} has no rows or no columns", parameter)
    _checked(frame, parameter)
    return Table(frame, orient, as_string)


def decode_target(value: Any, orient: str, parameter: str = "y") -> pd.Series | pd.DataFrame:
    """Decode `y`: a Series in its own pandas JSON, or a DataFrame; one column becomes 1-d."""
    if isinstance(value, pd.Series | pd.DataFrame):  # already decoded, e.g. from an Arrow body
        return value
    if value is None:
        raise InvalidPayload(f"missing parameter {parameter!r}", parameter)
    parsed, _ = _parse(value, parameter)
    series = _series(parsed, orient, parameter)
    if series is not None:
        target: pd.Series | pd.DataFrame = series
    else:
        target = _frame(parsed, orient, parameter)
        if orient == "table" and target.shape[1] == 2 and target.columns[0] == "index":
            # A Series with a non-unique index: pandas writes its index as the field "index"
            # without a primaryKey (it does so for frames too, where read_json keeps it as a
            # column; a 1-d target has no column it could be).
            target = target.set_index("index").rename_axis(None)
        if target.shape[1] == 0:
            raise InvalidPayload(f"{parameter} has no columns", parameter)
        if target.shape[1] == 1:
            target = target.iloc[:, 0]
            if orient == "table" and target.name == "values":
                target.name = None  # how pandas writes an unnamed Series in orient table
    if len(target) == 0:
        raise InvalidPayload(f"{parameter} has no rows", parameter)
    _checked(target, parameter)
    return target


def _series(value: Any, orient: str, parameter: str) -> pd.Series | None:
    """The Series that `Series.to_json(orient)` wrote, or None if `value` is a frame's JSON."""
    if orient == "split" and isinstance(value, dict) and isinstance(value.get("data"), list):
        data = value["data"]
        if "columns" in value or any(isinstance(v, list) for v in data):
            return None
        series = pd.Series(data, name=value.get("name"))
        index = value.get("index")
        if index is not None:
            if not isinstance(index, list) or len(index) != len(series):
                raise _shape_error(parameter, orient, '"index" with one label per row')
            series.index = _axis(index, parameter)
        return series
    if orient in ("records", "values") and isinstance(value, list):
        if any(isinstance(v, list | dict) for v in value):
            return None
        return pd.Series(value)
    if orient in ("columns", "index") and isinstance(value, dict):
        if any(isinstance(v, list | dict) for v in value.values()):
            return None
        return pd.Series(list(value.values()), index=_axis(list(value), parameter))
    return None


def align_target(x: pd.DataFrame, y: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """`y` in the row order of `x`: by label when both carry the same labels, else by position."""
    if len(y) != len(x):
        raise InvalidPayload(f"x has {len(x)} rows but y has {len(y)}", "y")
    if y.index.equals(x.index):
        return y
    if not y.index.has_duplicates and set(y.index) == set(x.index):
        return y.loc[x.index]
    return y.set_axis(x.index, axis=0)


# ---------------------------------------------------------------------------------------------
# Bulk bodies: Arrow IPC stream, Parquet, CSV

#: Media types read as bulk tables, and the format each names.
BULK_MEDIA = {
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "text/csv": "csv",
}
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise UnsupportedMediaType(
            "Arrow and Parquet bodies need pyarrow on the server (pip install ml-server[arrow])"
        ) from None
    return pyarrow


@dataclass(frozen=True)
class BulkLimits:
    """Bounds on a bulk body, checked from what it declares before any of it is decoded.

    `decoded_bytes` bounds both the columns once decompressed and the frame made of them (at
    8 bytes a cell): a few KB of zstd can declare gigabytes of zeros, or a column type with no
    data at all (null, run-end encoded) that pandas turns into one object per row.
    """

    rows: int
    columns: int
    decoded_bytes: int


#: No bounds: for callers that decode trusted bytes.
UNBOUNDED = BulkLimits(rows=2**62, columns=2**62, decoded_bytes=2**62)


def decode_bulk(
    raw: bytes,
    kind: str,
    orient: str = "split",
    parameter: str = "x",
    limits: BulkLimits = UNBOUNDED,
) -> Table:
    """The rows of an Arrow IPC stream, a Parquet file or CSV text (header row first).

    Raises:
        UnprocessableData: the body declares more rows, columns or decoded bytes than
            `limits`; found from its metadata (Arrow, Parquet) or header and line count (CSV)
            before anything is decompressed or parsed.

    PERF: Arrow needs no parsing at all: 1M x 10 float64 rows decode in milliseconds,
    where the same rows as JSON take seconds.
    """
    try:
        if kind == "csv":
            frame = _csv_frame(raw, limits, parameter)
        else:
            pa = _pyarrow()
            if kind == "arrow":
                _check_arrow(pa, raw, limits, parameter)
                table = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
            else:
                source = pa.BufferReader(raw)
                _check_parquet(pa.parquet.ParquetFile(source), limits, parameter)
                table = pa.parquet.read_table(source)
            rows = _float_rows(pa, table)
            if rows is not None:
                return Table(None, orient, False, array=rows, names=table.column_names)
            frame = table.to_pandas()
    except (UnsupportedMediaType, UnprocessableData):
        raise
    except Exception as exc:  # each format library raises its own error types
        raise InvalidPayload(
            f"{parameter}: not a readable {kind} body ({exc})", parameter
        ) from None
    frame.columns = _axis(list(frame.columns), parameter)
    if frame.empty:
        raise InvalidPayload(f"{parameter} has no rows or no columns", parameter)
    _checked(frame, parameter)
    return Table(frame, orient, False)


def _over(parameter: str, what: str, count: int, limit: int, name: str, exact: bool) -> None:
    """UnprocessableData naming the limit `name` when `count` is above `limit`."""
    if count > limit:
        amount = f"{count}" if exact else f"more than {limit}"
        raise UnprocessableData(
            f"{parameter} has {amount} {what}; this server takes at most {limit} ({name})"
        )


def _over_decoded(parameter: str, size: int, limits: BulkLimits, exact: bool) -> None:
    if size > limits.decoded_bytes:
        amount = f"{size}" if exact else f"more than {limits.decoded_bytes}"
        raise UnprocessableData(
            f"{parameter} would take {amount} bytes once decoded; this server takes at most "
            f"{limits.decoded_bytes} (max_decoded_bytes)"
        )


def _over_width(schema: Any, limits: BulkLimits, parameter: str) -> None:
    """The columns of `schema` that become columns of x (not those pandas keeps its index in)."""
    stored = (schema.pandas_metadata or {}).get("index_columns", [])
    index = {name for name in stored if isinstance(name, str)}
    columns = sum(1 for name in schema.names if name not in index)
    _over(parameter, "columns", columns, limits.columns, "max_columns", exact=True)


#: What pandas holds at least per cell of a frame (a float64, an int64, an object pointer).
_CELL_BYTES = 8


def _check_arrow(pa: Any, raw: bytes, limits: BulkLimits, parameter: str) -> None:
    """Rows, columns and decoded size of an Arrow IPC stream from its messages' metadata,
    counted as the messages come and refused at the first that goes over, before any
    buffer is decompressed.

    NOTE: each record batch and dictionary batch states its length, the length of every
    array node, and where its buffers are; a compressed buffer starts with its decompressed
    length. Dictionary batches count like record batches (bar their rows), so neither many
    small batches nor a dictionary dodges the bounds.
    """
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(raw))
    first = reader.read_next_message()
    if first.type != "schema":
        raise InvalidPayload(f"{parameter}: an Arrow stream starts with its schema", parameter)
    # The width first, from the flatbuffer: building a schema of millions of fields costs.
    width = _schema_width(bytes(first.metadata))
    _over(parameter, "columns", width, 2 * limits.columns, "max_columns", exact=True)
    _over_width(pa.ipc.read_schema(first), limits, parameter)
    rows = cells = decoded = 0
    # PERF: batches of one writer mostly share their metadata; parsed once (~30 us) each.
    parsed: dict[tuple[str, bytes], _BatchMeta] = {}
    for message in reader:
        kind = message.type
        if kind not in ("record batch", "dictionary"):
            raise InvalidPayload(f"{parameter}: unexpected {kind} message", parameter)
        metadata = bytes(message.metadata)
        batch = parsed.get((kind, metadata))
        if batch is None:
            batch = parsed[(kind, metadata)] = _BatchMeta(kind, metadata)
        if kind == "record batch":
            rows += batch.length
            _over(parameter, "rows", rows, limits.rows, "max_rows", exact=False)
        cells += batch.cells
        decoded += _decompressed(batch.buffers, message.body, batch.compressed)
        _over_decoded(parameter, max(decoded, cells * _CELL_BYTES), limits, exact=False)


class _Flatbuffer:
    """Just enough of the flatbuffers format to read Arrow's message metadata
    (Message.fbs) without building anything from it.

    Raises ValueError (struct.error is one) on offsets that point outside the bytes.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def unpack(self, fmt: str, pos: int) -> int:
        if pos < 0:
            raise ValueError("offset out of bounds in Arrow metadata")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> tuple[int, int]:
        return self.table(self.unpack("<I", 0))

    def table(self, pos: int) -> tuple[int, int]:
        """A table: its position and that of its vtable."""
        return pos, pos - self.unpack("<i", pos)

    def field(self, table: tuple[int, int], index: int) -> int | None:
        """Where field `index` of `table` is stored; None when absent."""
        pos, vtable = table
        if 4 + 2 * index >= self.unpack("<H", vtable):
            return None
        offset = self.unpack("<H", vtable + 4 + 2 * index)
        return pos + offset if offset else None

    def subtable(self, table: tuple[int, int], index: int) -> tuple[int, int]:
        pos = self.field(table, index)
        if pos is None:
            raise ValueError("Arrow metadata lacks a required field")
        return self.table(pos + self.unpack("<I", pos))

    def scalar(self, table: tuple[int, int], index: int, fmt: str) -> int:
        pos = self.field(table, index)
        return 0 if pos is None else self.unpack(fmt, pos)

    def vector(self, table: tuple[int, int], index: int) -> tuple[int, int]:
        """Where the elements of vector field `index` start, and how many there are."""
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        start = pos + self.unpack("<I", pos)
        return start + 4, self.unpack("<I", start)

    def pairs(self, table: tuple[int, int], index: int) -> tuple[int, ...]:
        """A vector of (int64, int64) structs, flattened."""
        start, count = self.vector(table, index)
        if start + 16 * count > len(self.data):
            raise ValueError("vector out of bounds in Arrow metadata")
        return struct.unpack_from(f"<{2 * count}q", self.data, start)


def _schema_width(metadata: bytes) -> int:
    """Top-level fields of a schema message (Message.header -> Schema.fields)."""
    flat = _Flatbuffer(metadata)
    return flat.vector(flat.subtable(flat.root(), 2), 1)[1]


class _BatchMeta:
    """What one record batch or dictionary batch message declares (rows, array cells,
    where its buffers are), read from its metadata."""

    def __init__(self, kind: str, metadata: bytes) -> None:
        flat = _Flatbuffer(metadata)
        header = flat.subtable(flat.root(), 2)  # Message.header: the batch
        if kind == "dictionary":
            header = flat.subtable(header, 1)  # DictionaryBatch.data: a RecordBatch
        self.length = flat.scalar(header, 0, "<q")  # RecordBatch.length
        nodes = flat.pairs(header, 1)  # RecordBatch.nodes: (length, null_count)
        #: (offset, length) of each buffer in the body, flattened.
        self.buffers = flat.pairs(header, 2)  # RecordBatch.buffers
        self.compressed = flat.field(header, 3) is not None  # RecordBatch.compression
        if self.length < 0 or min(nodes, default=0) < 0 or min(self.buffers, default=0) < 0:
            raise ValueError("negative length in Arrow record batch metadata")
        self.cells = sum(nodes[::2])


def _decompressed(buffers: tuple[int, ...], body: Any, compressed: bool) -> int:
    """Bytes the buffers take once decompressed: a compressed buffer's first 8 bytes hold
    that length (-1: stored as is). `buffers` holds (offset, length) pairs, flattened.

    NOTE: pyarrow decompresses into a buffer of the length stated, and fails when the data
    would not fit it, so the stated length is what it costs.
    """
    if not compressed:
        return sum(buffers[1::2])
    total = 0
    for offset, length in zip(buffers[::2], buffers[1::2], strict=True):
        if length >= 8:
            size = struct.unpack_from("<q", body, offset)[0]
            total += length - 8 if size < 0 else max(size, _MIN_COMPRESSED)
    return total


#: PERF: what a compressed buffer counts as at least. pyarrow spends ~80 us on each (zstd):
#: a stream of 300,000 one-row batches (60 MB) took 24 s to read. Counted so, the default
#: 256 MiB of decoded size holds at most 16,384 compressed buffers (~1.3 s); buffers of
#: 2,048 float64 rows or more count as what they hold.
_MIN_COMPRESSED = 16 * 1024


def _check_parquet(file: Any, limits: BulkLimits, parameter: str) -> None:
    """Rows, columns and decoded size of a Parquet file from its footer, before any page is
    read: the rows and values of every column chunk and their uncompressed sizes."""
    metadata = file.metadata
    _over_width(file.schema_arrow, limits, parameter)
    _over(parameter, "rows", metadata.num_rows, limits.rows, "max_rows", exact=True)
    cells = decoded = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            cells += max(chunk.num_values, row_group.num_rows)
            decoded += chunk.total_uncompressed_size
        _over_decoded(parameter, max(decoded, cells * _CELL_BYTES), limits, exact=False)


#: Blank lines (pandas skips them, whitespace-only ones too) before a CSV header.
_CSV_BLANK_LINES = re.compile(rb"(?:[ \t]*(?:\r\n|\r|\n))*")
#: One CSV field as pandas' tokenizer reads it: quoted only when a quote opens the field
#: (`""` inside is a quote), else plain text up to a comma or line break.
_CSV_FIELD = re.compile(rb'"[^"]*(?:""[^"]*)*"[^,\r\n]*|[^,\r\n]*')


def _csv_width(raw: bytes, limit: int) -> int:
    """Fields of the header line, counted up to `limit + 1` without reading further."""
    pos = _CSV_BLANK_LINES.match(raw).end()
    columns = 0
    while columns <= limit:
        columns += 1
        pos = _CSV_FIELD.match(raw, pos).end()  # type: ignore[union-attr]  # matches ""
        if raw[pos : pos + 1] != b",":
            break
        pos += 1
    return columns


def _csv_frame(raw: bytes, limits: BulkLimits, parameter: str) -> pd.DataFrame:
    """CSV text read by pandas once its header's width, and the cells its lines can hold,
    are within `limits`; at most `limits.rows + 1` rows are parsed."""
    columns = _csv_width(raw, limits.columns)
    _over(parameter, "columns", columns, limits.columns, "max_columns", exact=False)
    # NOTE: a row is a line (or more, with quoted line breaks) of at most one cell more
    # than the header (pandas then makes the first an index); more is a parse error.
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n") + 1
    rows = min(lines, limits.rows + 1)
    _over_decoded(parameter, (columns + 1) * rows * _CELL_BYTES, limits, exact=False)
    frame = pd.read_csv(io.BytesIO(raw), nrows=limits.rows + 1)
    _over(parameter, "rows", len(frame), limits.rows, "max_rows", exact=False)
    return frame


def _float_rows(pa: Any, table: Any) -> np.ndarray | None:
    """The rows of a table of float64 columns with distinct names and no index of its own,
    as the array a frame of them would hold; None for anything else.

    PERF: `to_pandas` and the checks after it cost ~1 ms for 10 columns; a frame built
    from the array ~0.1 ms; the array alone, matched to the schema by name, ~20 µs.
    """
    if not table.num_rows or not table.num_columns:
        return None
    if not all(pa.types.is_float64(t) for t in table.schema.types):
        return None
    metadata = table.schema.pandas_metadata or {}
    if any(not _default_range(i, table.num_rows) for i in metadata.get("index_columns", [])):
        return None
    # pandas metadata can ask for other dtypes (nullable "Float64"): to_pandas knows those.
    if any(c.get("numpy_type") != "float64" for c in metadata.get("columns", [])):
        return None
    labels = [_label(name) for name in table.column_names]
    if len(set(labels)) != len(labels):
        return None  # the general path names the duplicates
    # Column after column, as pandas keeps a frame's values: no strided copy, no second copy
    # when a frame is built, and the layout scikit-learn gets from a frame anyway.
    return np.vstack([column.to_numpy() for column in table.columns]).T


def _default_range(index: Any, rows: int) -> bool:
    """pandas metadata of a RangeIndex 0..rows-1, the one pandas gives by default."""
    return isinstance(index, dict) and (
        index.get("kind") == "range"
        and index.get("name") is None
        and (index.get("start"), index.get("stop"), index.get("step")) == (0, rows, 1)
    )


def split_target(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame]:
    """Separate the `target` columns (comma-separated names) of a bulk body into y."""
    names = [_label(name.strip()) for name in target.split(",")]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InvalidPayload(f"target names columns the body lacks: {_names(missing)}", "target")
    if set(frame.columns) <= set(names):
        raise InvalidPayload(
            "target names every column of the body; x needs at least one column", "target"
        )
    y = frame[names[0]] if len(names) == 1 else frame[names]
    return frame.drop(columns=names), y


def encode_arrow(frame: pd.DataFrame) -> bytes:
    """An Arrow IPC stream of `frame`, its index kept; column names become strings."""
    pa = _pyarrow()
    table = pa.Table.from_pandas(frame.set_axis([str(c) for c in frame.columns], axis=1))
    return _ipc(pa, table)


def encode_arrow_array(values: np.ndarray, columns: list[Any], index: pd.Index | None) -> bytes:
    """`encode_arrow(DataFrame(values, index, columns))`: without an index of its own
    (None: 0..n-1), the columns go straight into Arrow, as the client reads them back.

    PERF: ~1 ms less than through pandas for a 10k-row answer.
    """
    if index is not None or values.dtype.kind not in "biuf":
        return encode_arrow(_frame_of(values, columns, index))
    pa = _pyarrow()
    names = [str(c) for c in columns]
    table = pa.table([pa.array(values[:, i]) for i in range(values.shape[1])], names=names)
    return _ipc(pa, table)


def _ipc(pa: Any, table: Any) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------------------------------------
# Encoding


def _key(label: Any) -> str:
    return label if isinstance(label, str) else str(label)


def _rows(frame: pd.DataFrame) -> list[list[Any]]:
    # PERF: column-wise tolist() converts numpy scalars to Python in C; zip makes the rows.
    return [list(row) for row in zip(*(frame[c].tolist() for c in frame.columns), strict=True)]


def encode_frame(frame: pd.DataFrame, orient: str) -> Any:
    """The JSON value `frame.to_json(orient=orient)` would hold, at full float64 precision."""
    if orient == "table":
        if frame.index.nlevels == 1 and frame.index.name is None and "index" in frame.columns:
            # pandas would write the index as "index" too, and refuse; "level_0" reads back
            # as an unnamed index all the same.
            frame = frame.rename_axis("level_0")
        schema = pd.io.json.build_table_schema(frame)
        flat = frame.reset_index()
        keys = [_key(c) for c in flat.columns]
        return {
            "schema": schema,
            "data": [dict(zip(keys, row, strict=True)) for row in _rows(flat)],
        }
    return _encode(
        list(frame.columns),
        frame.index.tolist(),
        lambda: _rows(frame),
        lambda: [frame[c].tolist() for c in frame.columns],
        orient,
    )


#: Array kinds whose `tolist()` gives the values `Series.tolist()` would: bool, int, float,
#: object and str. Others (datetimes) go through a frame.
_PLAIN_KINDS = frozenset("biufOU")


def _orjson_exact(dtype: np.dtype) -> bool:
    """orjson writes such arrays exactly as their Python numbers: bool, int and float64
    (float32 it would write shortened, unlike `float(value)`)."""
    return dtype.isnative and (dtype.kind in "biu" or dtype == np.float64)


def encode_array(
    values: np.ndarray, columns: list[Any], index: pd.Index | None, orient: str
) -> Any:
    """`encode_frame(DataFrame(values, index, columns), orient)` without building the frame;
    an `index` of None stands for 0..n-1. The value may hold numpy arrays: `dumps` (or
    orjson with OPT_SERIALIZE_NUMPY) writes them as the lists they stand for.

    PERF: for one row, the frame and its column-wise conversion cost ~100 us; this ~3 us.
    """
    if orient == "table" or values.dtype.kind not in _PLAIN_KINDS:
        return encode_frame(_frame_of(values, columns, index), orient)
    if orient in ("split", "values") and _orjson_exact(values.dtype):
        # PERF: orjson writes these arrays itself, exactly: no Python number per value.
        rows = np.ascontiguousarray(values)
        if orient == "values":
            return rows
        labels = np.arange(len(values)) if index is None else index.tolist()
        return {"columns": columns, "index": labels, "data": rows}
    labels = list(range(len(values))) if index is None else index.tolist()
    return _encode(columns, labels, values.tolist, lambda: values.T.tolist(), orient)


def _frame_of(values: np.ndarray, columns: list[Any], index: pd.Index | None) -> pd.DataFrame:
    """The frame `values` stand for. PERF: object labels; inferring an Arrow-backed string
    Index costs more."""
    return pd.DataFrame(values, index=index, columns=pd.Index(columns, dtype=object), copy=False)


def _encode(
    columns: list[Any],
    index: list[Any],
    rows: Callable[[], list[list[Any]]],
    by_column: Callable[[], list[list[Any]]],
    orient: str,
) -> Any:
    if orient == "split":
        return {"columns": columns, "index": index, "data": rows()}
    if orient == "records":
        keys = [_key(c) for c in columns]
        return [dict(zip(keys, row, strict=True)) for row in rows()]
    if orient == "values":
        return rows()
    if orient == "columns":
        keys = [_key(i) for i in index]
        return {
            _key(c): dict(zip(keys, values, strict=True))
            for c, values in zip(columns, by_column(), strict=True)
        }
    if orient == "index":
        keys = [_key(c) for c in columns]
        return {
            _key(i): dict(zip(keys, row, strict=True)) for i, row in zip(index, rows(), strict=True)
        }
    raise InvalidPayload(f"orient must be one of {', '.join(ORIENTS)}; got {orient!r}", "orient")


def dumps(value: Any) -> bytes:
    """JSON bytes for a response: exact floats, NaN as null, numpy values and datetimes handled."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ---------------------------------------------------------------------------------------------
# Keys


def training_key(
    x: pd.DataFrame,
    y: pd.Series | pd.DataFrame | None,
    modkwargs: Mapping[str, Any],
    algkwargs: Mapping[str, Any],
) -> str:
    """A URL-safe key that is equal exactly when decoded data and kwargs are equal."""
    digest = hashlib.sha256(b"mlserver-data-v1\0")
    for part in (x, y):
        if part is None:
            digest.update(b"\0none\0")
            continue
        frame = part.to_frame() if isinstance(part, pd.Series) else part
        # NOTE: hash_pandas_object ignores column names, so they go in separately, typed.
        header = [
            type(part).__name__,
            type(part.name).__name__ if isinstance(part, pd.Series) else None,
            [[type(c).__name__, _key(c), str(t)] for c, t in frame.dtypes.items()],
            [[type(n).__name__, None if n is None else _key(n)] for n in frame.index.names],
        ]
        digest.update(orjson.dumps(header, default=str))
        hashes = pd.util.hash_pandas_object(frame, index=True)
        digest.update(hashes.to_numpy().tobytes())
    kwargs = [dict(modkwargs), dict(algkwargs)]
    digest.update(orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:32]


def name_key(name: str) -> str:
    """The key a `name` stands for: deterministic, URL-safe, never equal to a data key."""
    return hashlib.sha256(b"mlserver-name-v1\0" + name.encode()).hexdigest()[:32]
