"""Decoding `x` and `y` from the JSON of every pandas orient, the way `pandas.read_json` reads
them, at full float64 precision.

`x` and `y` arrive either as the text `DataFrame.to_json(orient=...)` wrote or as the JSON value
itself. Both are parsed with orjson (exact float64, unlike `read_json`'s default parser) and built
into frames the way `pandas.read_json` would: labels that spell integers become integers, so the
same data gives the same frame, and the same key, whatever the orient or form it came in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlserver.errors import InvalidPayload
from mlserver.frames.fast import float_rows, lazy_rows, numeric_rows
from mlserver.frames.json import CONTAINERS, LAZY_BODY_BYTES, LazyJSON, lazy_document, parse
from mlserver.frames.labels import axis, names
from mlserver.frames.limits import check_shape
from mlserver.frames.rows import Rows

if TYPE_CHECKING:
    from mlserver.frames.schema import Schema

__all__ = [
    "ORIENTS",
    "align_target",
    "check_cells",
    "decode_frame",
    "decode_target",
    "decode_training",
    "orient_of",
    "unknown_orient",
]

ORIENTS = ("columns", "split", "records", "index", "values", "table")


def unknown_orient(orient: Any) -> InvalidPayload:
    """The one refusal of an orient pandas does not write."""
    return InvalidPayload(f"orient must be one of {', '.join(ORIENTS)}; got {orient!r}", "orient")


def orient_of(orient: Any) -> str:
    """The orient a request names: pandas' default for frames ("columns") when not given."""
    if orient is None:
        return "columns"
    if orient not in ORIENTS:
        raise unknown_orient(orient)
    return orient


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
    return pd.DataFrame(data, columns=None if columns is None else axis(columns, parameter))


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
            frame.index = axis(list(frame.index), parameter).rename(frame.index.name)
    frame.columns = axis(list(frame.columns), parameter)
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


def _split_index(data: Any, index: Any, parameter: str) -> Any:
    """`data` (a frame or a Series) labelled by orient split's "index", if given."""
    if index is not None:
        if not isinstance(index, list) or len(index) != len(data):
            raise _shape_error(parameter, "split", '"index" with one label per row')
        data.index = axis(index, parameter)
    return data


def _orient_frame(value: Any, orient: str, parameter: str) -> pd.DataFrame:
    if orient == "split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise _shape_error(parameter, orient, 'an object with "columns", "index", "data"')
        frame = _rows_frame(value["data"], value.get("columns"), orient, parameter)
        return _split_index(frame, value.get("index"), parameter)
    if orient == "records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise _shape_error(parameter, orient, "a list of objects, one per row")
        frame = pd.DataFrame(value)
        frame.columns = axis(list(frame.columns), parameter)
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
        frame.index = axis(list(frame.index), parameter)
        frame.columns = axis(list(frame.columns), parameter)
        return frame
    if orient == "table":
        return _table_frame(value, parameter)
    raise unknown_orient(orient)


def check_cells(data: pd.DataFrame | pd.Series, parameter: str) -> None:
    """Refuse what no estimator takes and what would break hashing: nested cells, duplicates."""
    frame = data.to_frame() if isinstance(data, pd.Series) else data
    if frame.columns.has_duplicates:
        duplicated = names(list(dict.fromkeys(frame.columns[frame.columns.duplicated()])))
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
) -> Rows:
    """Decode `x` (pandas-JSON text, the JSON value, or Rows a bulk body gave) into Rows.

    With the training `schema` of an all-numeric model, plain tables go straight into one
    float64 array in training order (conformed Rows); anything else takes the general path
    into a frame, which `Schema.rows` then conforms.
    """
    if isinstance(value, Rows):  # already decoded, e.g. from an Arrow body
        if schema is not None and schema.numeric and not value.conformed:
            return float_rows(value, schema) or value
        return value
    if value is None:
        raise InvalidPayload(f"missing parameter {parameter!r}", parameter)
    if schema is not None and schema.numeric and orient in ("split", "values"):
        lazy, as_string = value, False
        if isinstance(value, str | bytes) and len(value) >= LAZY_BODY_BYTES:
            text = value.encode() if isinstance(value, str) else value
            document = lazy_document(text)  # pandas-JSON text
            if isinstance(document, CONTAINERS):
                lazy, as_string = LazyJSON(document, text, None, text.count(b"[")), True
        if isinstance(lazy, LazyJSON):
            fast = lazy_rows(lazy, orient, schema, as_string)
            if fast is not None:
                return fast
    parsed, as_string = parse(value, parameter)
    if schema is not None and schema.numeric:
        fast = numeric_rows(parsed, orient, schema, as_string)
        if fast is not None:
            return fast
    frame = _frame(parsed, orient, parameter)
    if frame.empty:
        raise InvalidPayload(f"{parameter} has no rows or no columns", parameter)
    check_cells(frame, parameter)
    return Rows(frame, orient=orient, as_string=as_string)


def decode_target(value: Any, orient: str, parameter: str = "y") -> pd.Series | pd.DataFrame:
    """Decode `y`: a Series in its own pandas JSON, or a DataFrame; one column becomes 1-d."""
    if isinstance(value, pd.Series | pd.DataFrame):  # already decoded, e.g. from an Arrow body
        return value
    if value is None:
        raise InvalidPayload(f"missing parameter {parameter!r}", parameter)
    parsed, _ = parse(value, parameter)
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
    check_cells(target, parameter)
    return target


def _series(value: Any, orient: str, parameter: str) -> pd.Series | None:
    """The Series that `Series.to_json(orient)` wrote, or None if `value` is a frame's JSON."""
    if orient == "split" and isinstance(value, dict) and isinstance(value.get("data"), list):
        data = value["data"]
        if "columns" in value or any(isinstance(v, list) for v in data):
            return None
        series = pd.Series(data, name=value.get("name"))
        return _split_index(series, value.get("index"), parameter)
    if orient in ("records", "values") and isinstance(value, list):
        if any(isinstance(v, list | dict) for v in value):
            return None
        return pd.Series(value)
    if orient in ("columns", "index") and isinstance(value, dict):
        if any(isinstance(v, list | dict) for v in value.values()):
            return None
        return pd.Series(list(value.values()), index=axis(list(value), parameter))
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


def decode_training(
    x: Any, y: Any, orient: str, *, max_rows: int, max_columns: int
) -> tuple[Rows, pd.Series | pd.DataFrame | None]:
    """`x` and `y` of a fit or an update: x within the limits, y (if given) in x's row order."""
    rows = decode_frame(x, orient, "x")
    check_shape(rows.shape, max_rows, max_columns)
    target = None if y is None else align_target(rows.frame, decode_target(y, orient))
    return rows, target
