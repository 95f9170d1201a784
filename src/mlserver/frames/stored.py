"""Training data as the store keeps it: `x` and `y` of a fit or update, encoded once, given
back exactly, and named by their content.

The stored form is one Arrow IPC stream, zstd-compressed, with no pickle anywhere: whoever
can write the database must not be able to run code through a stored dataset. Each column
of x and y (and each level of a row index other than 0..n-1) is one Arrow column, named by
position (`x.0`, `x.index.0`, `y.0`, ...); what Arrow has no word for (the exact pandas
dtype, the labels and their types, the index, y's kind) is JSON in the schema metadata
under `mlserver.stored`.

- numpy columns (bool, int, uint, float, datetime64, timedelta64) go in as their bytes:
  float64 bit for bit, NaT as the integer it is;
- nullable dtypes (Int64, Float64, boolean, ...) as values plus validity, a NaN that is not
  NA staying NaN; `str`/`string` as Arrow strings in their storage and NA flavour;
  categoricals as dictionaries, categories and order kept; tz-aware datetimes as int64;
- object columns as a dense union of the kinds of Python values they hold (None, float,
  int, bool, str, bytes, pd.NA, integers beyond 64 bits as their digits), so a NaN stays a
  NaN, a None a None, and 1 stays apart from "1" and 1.0.

`encode` decodes what it wrote and compares it with x and y before giving it out (bytes for
numpy columns, cell by cell for object ones), so what it cannot give back exactly is refused
with `NotStorable`, naming the column, instead of being stored changed.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlserver.errors import NotStorable, UnprocessableData, UnsupportedMediaType
from mlserver.frames.labels import label, label_text

__all__ = ["FORMAT", "Encoded", "arrow_answer", "content_digest", "decode", "encode", "json_answer"]

#: The name of the encoding, stored beside each dataset.
FORMAT = "arrow-ipc-zstd-1"

#: Schema metadata of a stored dataset: how its Arrow columns become x and y again.
_META = b"mlserver.stored"
#: Schema metadata of `arrow_answer`: the target columns, a JSON list of names.
TARGETS = b"mlserver.targets"
#: The name `arrow_answer` gives an unnamed 1-d y (as `mlserver.provenance.DEFAULT_TARGET`).
_UNNAMED_TARGET = "y"

Target = pd.Series | pd.DataFrame | None


@dataclass(frozen=True)
class Encoded:
    blob: bytes
    rows: int
    columns: int
    #: Bytes of x and y in memory (pandas' deep memory usage).
    raw_bytes: int


# -- what a column is ---------------------------------------------------------------------


def _kind(dtype: Any) -> str:
    """How a dtype is stored and hashed: numpy, object, masked, string, category,
    datetimetz, or other (not storable)."""
    if isinstance(dtype, np.dtype):
        if dtype == np.dtype("O"):
            return "object"
        return "numpy" if dtype.kind in "biufMm" else "other"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetimetz"
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.name in _MASKED:
        return "masked"
    return "other"


_MASKED = frozenset(
    {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}
    | {"Float32", "Float64", "boolean"}
)


def _dtype_spec(dtype: Any) -> dict[str, Any]:
    """A dtype as JSON that names it exactly (`pandas_dtype(str(dtype))` would not: "str"
    forgets the storage, "category" the categories)."""
    kind = _kind(dtype)
    if kind in ("numpy", "object", "other") and isinstance(dtype, np.dtype):
        return {"numpy": dtype.str}
    if kind == "masked":
        return {"masked": dtype.name}
    if kind == "string":
        return {"string": dtype.storage, "nan": _is_nan(dtype.na_value)}
    if kind == "datetimetz":
        return {"datetimetz": dtype.unit, "tz": str(dtype.tz)}
    if kind == "category":
        categories = dtype.categories
        return {"category": _dtype_spec(categories.dtype), "ordered": bool(dtype.ordered)}
    return {"other": str(dtype), "type": type(dtype).__name__}


def _values(data: pd.Series | pd.Index) -> Any:
    """The values of a column or index level: a numpy array, or the extension array."""
    values = data.array
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        return values.to_numpy()
    return values


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _dtype_of(spec: dict[str, Any], categories: pd.Index | None = None) -> Any:
    if "numpy" in spec:
        return np.dtype(spec["numpy"])
    if "masked" in spec:
        return pd.api.types.pandas_dtype(spec["masked"])
    if "string" in spec:
        return pd.StringDtype(spec["string"], na_value=np.nan if spec["nan"] else pd.NA)
    if "datetimetz" in spec:
        return pd.DatetimeTZDtype(spec["datetimetz"], spec["tz"])
    if "category" in spec:
        return pd.CategoricalDtype(categories, ordered=spec["ordered"])
    raise NotStorable(f"unknown stored dtype {spec}")  # pragma: no cover - never written


# -- labels -------------------------------------------------------------------------------

_LABEL_TAGS: dict[type, str] = {str: "s", int: "i", float: "f", bool: "b", type(None): "n"}


def _label_spec(value: Any, where: Callable[[], str] | None = None) -> list[Any]:
    """A label as JSON with its type: 0 and "0" and 0.0 stay apart. Labels of other types
    are refused when `where` names them (encoding), hashed by type and repr otherwise."""
    tag = _LABEL_TAGS.get(type(value))
    if tag == "f":
        return [tag, value.hex()]  # exact, nan and -0.0 included
    if tag == "i":
        return [tag, str(value)]  # JSON (and orjson) stop at 64 bits; Python ints do not
    if tag is not None:
        return [tag, value]
    if where is not None:
        raise NotStorable(f"{where()} is of type {type(value).__name__}, which is not stored")
    return ["?", f"{type(value).__module__}.{type(value).__qualname__}", repr(value)]


def _label_of(spec: list[Any]) -> Any:
    tag, value = spec
    if tag == "f":
        return float.fromhex(value)
    if tag == "i":
        return int(value)
    return value


def _axis_spec(index: pd.Index, where: str, strict: bool) -> dict[str, Any]:
    """Column labels (or a RangeIndex of rows) as JSON: class, dtype, names, labels."""
    check = (lambda text: lambda: text) if strict else (lambda text: None)
    names = [_label_spec(n, check(f"the name of {where}")) for n in index.names]
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "names": names}
    if isinstance(index, pd.MultiIndex):
        if strict:
            raise NotStorable(f"{where} has several levels, which are not stored")
        labels = [[_label_spec(v) for v in row] for row in index.tolist()]
        return {"multi": labels, "names": names}
    labels = [_label_spec(v, check(f"{where} label {v!r}")) for v in index.tolist()]
    return {"dtype": _dtype_spec(index.dtype), "labels": labels, "names": names}


def _axis_of(spec: dict[str, Any]) -> pd.Index:
    (name,) = (_label_of(n) for n in spec["names"])
    if "range" in spec:
        return pd.RangeIndex(*spec["range"], name=name)
    labels = [_label_of(v) for v in spec["labels"]]
    return pd.Index(labels, dtype=_dtype_of(spec["dtype"]), name=name)


# -- columns as Arrow arrays ------------------------------------------------------------

# The kinds of Python values an object column may hold, as union children: tag, code.
_OBJECT_CODES: dict[type, int] = {type(None): 0, float: 1, int: 2, bool: 3, str: 4, bytes: 5}
_OBJECT_CODES[type(pd.NA)] = 6
_BIG = 7  # ints beyond int64, kept as their digits
_OBJECT_NAMES = ["none", "float", "int", "bool", "str", "bytes", "na", "bigint"]


def _object_codes(values: np.ndarray, where: str) -> np.ndarray:
    codes = np.fromiter((_OBJECT_CODES.get(type(v), -1) for v in values), np.int8, len(values))
    if (codes < 0).any():
        bad = values[int(np.flatnonzero(codes < 0)[0])]
        kind = "lists or objects" if isinstance(bad, list | dict | np.ndarray) else None
        raise NotStorable(
            f"{where} holds {kind or 'values of type ' + type(bad).__name__} "
            f"(e.g. {_short(bad)}), which are not stored"
        )
    ints = np.flatnonzero(codes == 2)
    if len(ints):
        big = [i for i in ints if not -(2**63) <= values[i] < 2**63]
        codes[big] = _BIG
    return codes


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object_array(pa: Any, values: np.ndarray, where: str) -> Any:
    """An object column as a dense union of the kinds of values it holds."""
    codes = _object_codes(values, where)
    offsets = np.zeros(len(values), np.int32)
    children, names, type_codes = [], [], []
    for code in np.unique(codes).tolist():
        positions = np.flatnonzero(codes == code)
        offsets[positions] = np.arange(len(positions), dtype=np.int32)
        cells = values[positions]
        if code in (0, 6):
            child = pa.nulls(len(cells))
        elif code == 1:
            child = pa.array(cells.astype(np.float64), pa.float64())
        elif code == 2:
            child = pa.array(cells.astype(np.int64), pa.int64())
        elif code == 3:
            child = pa.array(cells.astype(bool), pa.bool_())
        elif code == 4:
            child = pa.array(cells.tolist(), pa.large_string())
        elif code == 5:
            child = pa.array(cells.tolist(), pa.large_binary())
        else:
            child = pa.array([str(v) for v in cells], pa.large_string())
        children.append(child)
        names.append(_OBJECT_NAMES[code])
        type_codes.append(code)
    return pa.UnionArray.from_dense(
        pa.array(codes, pa.int8()), pa.array(offsets, pa.int32()), children, names, type_codes
    )


def _object_values(array: Any) -> np.ndarray:
    codes = array.type_codes.to_numpy(zero_copy_only=False)
    offsets = array.offsets.to_numpy(zero_copy_only=False)
    out = np.full(len(array), None, dtype=object)
    for i in range(array.type.num_fields):
        code = array.type.type_codes[i]
        positions = np.flatnonzero(codes == code)
        if not len(positions) or code == 0:
            continue
        child = array.field(i)
        if code == 6:
            cells: Any = [pd.NA] * len(child)
        elif code == 1:
            cells = child.to_numpy(zero_copy_only=False).tolist()
        elif code == _BIG:
            cells = [int(v) for v in child.to_pylist()]
        else:
            cells = child.to_pylist()
        taken = np.empty(len(cells), dtype=object)
        taken[:] = cells
        out[positions] = taken[offsets[positions]]
    return out


def _to_arrow(pa: Any, values: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """One column (a numpy array or a pandas extension array) as an Arrow array and the
    JSON spec of its dtype."""
    dtype = values.dtype
    kind = _kind(dtype)
    spec = _dtype_spec(dtype)
    if kind == "numpy":
        if dtype.kind in "Mm":  # as their int64, so NaT stays the integer it is
            return pa.array(np.asarray(values).view(np.int64)), spec
        return pa.array(np.asarray(values)), spec
    if kind == "object":
        return _object_array(pa, np.asarray(values, dtype=object), where), spec
    if kind == "masked":
        data = np.where(values._mask, np.zeros((), values._data.dtype), values._data)
        return pa.array(data, mask=values._mask), spec
    if kind == "string":
        return _arrow_strings(pa, values), spec
    if kind == "datetimetz":
        return pa.array(values.asi8), spec
    if kind == "category":
        categories, category_spec = _to_arrow(
            pa, _values(dtype.categories), f"{where}'s categories"
        )
        if _kind(dtype.categories.dtype) == "object":
            raise NotStorable(f"{where} has categories of mixed or object type, not stored")
        codes = np.asarray(values.codes)
        indices = pa.array(codes, mask=codes < 0)
        spec["category"] = category_spec
        return pa.DictionaryArray.from_arrays(indices, categories, ordered=dtype.ordered), spec
    raise NotStorable(f"{where} is of dtype {dtype}, which is not stored")


def _arrow_strings(pa: Any, values: Any) -> Any:
    """A string extension array as one Arrow large_string array, nulls where it has NA.

    PERF: pyarrow-backed arrays hand over their own buffers: no Python string per cell.
    """
    array = _chunk(pa.array(values))
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


def _from_arrow(array: Any, spec: dict[str, Any]) -> Any:
    """The numpy or extension array `_to_arrow` made `array` from."""
    if "numpy" in spec:
        dtype = np.dtype(spec["numpy"])
        if dtype == np.dtype("O"):
            return _object_values(array)
        values = array.to_numpy(zero_copy_only=False)
        return values.view(dtype) if dtype.kind in "Mm" else values
    if "masked" in spec:
        dtype = pd.api.types.pandas_dtype(spec["masked"])
        mask = array.is_null().to_numpy(zero_copy_only=False)
        zero = False if spec["masked"] == "boolean" else 0
        data = array.fill_null(zero).to_numpy(zero_copy_only=False).astype(dtype.numpy_dtype)
        return dtype.construct_array_type()(data, mask)
    if "string" in spec:
        return _dtype_of(spec).__from_arrow__(array)
    if "datetimetz" in spec:
        dtype = _dtype_of(spec)
        utc = array.to_numpy(zero_copy_only=False).view(f"M8[{dtype.unit}]")
        return (
            pd.array(utc, dtype=f"datetime64[{dtype.unit}]").tz_localize("UTC").tz_convert(dtype.tz)
        )
    if "category" in spec:
        categories = pd.Index(_from_arrow(array.dictionary, spec["category"]))
        codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        return pd.Categorical.from_codes(codes, dtype=_dtype_of(spec, categories))
    raise NotStorable(f"unknown stored dtype {spec}")  # pragma: no cover - never written


# -- frames -------------------------------------------------------------------------------


def _column_where(part: str, frame: pd.DataFrame | pd.Series, position: int) -> str:
    if isinstance(frame, pd.Series):
        return part if frame.name is None else f"{part} ({frame.name!r})"
    return f"{part} column {frame.columns[position]!r}"


def _part_arrays(
    pa: Any, part: str, data: pd.DataFrame | pd.Series, x_index: pd.Index | None
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """The JSON spec of x or y and its Arrow columns with their names."""
    arrays, names, dtypes = [], [], []
    if isinstance(data, pd.Series):
        spec: dict[str, Any] = {
            "kind": "series",
            "name": _label_spec(data.name, lambda: f"the name of {part}"),
        }
        columns = [_values(data)]
    else:
        if data.columns.has_duplicates:
            duplicated = list(dict.fromkeys(data.columns[data.columns.duplicated()]))
            raise NotStorable(f"{part} has duplicate columns {duplicated}, which are not stored")
        spec = {"kind": "frame", "columns": _axis_spec(data.columns, f"{part}'s columns", True)}
        columns = [_values(data.iloc[:, i]) for i in range(data.shape[1])]
    for position, values in enumerate(columns):
        where = _column_where(part, data, position)
        array, dtype = _guarded(where, lambda v=values, w=where: _to_arrow(pa, v, w))
        arrays.append(array)
        names.append(f"{part}.{position}")
        dtypes.append(dtype)
    spec["dtypes"] = dtypes
    index = data.index
    if x_index is not None and _same_index(index, x_index) is None:
        spec["index"] = "x"
    elif isinstance(index, pd.RangeIndex):
        spec["index"] = _axis_spec(index, f"{part}'s index", True)
    else:
        levels, level_names = [], []
        for level in range(index.nlevels):
            values = index.get_level_values(level)
            where = f"{part}'s index" + (f" level {level}" if index.nlevels > 1 else "")
            name = _label_spec(values.name, lambda w=where: f"the name of {w}")
            array, dtype = _guarded(where, lambda v=values, w=where: _to_arrow(pa, _values(v), w))
            arrays.append(array)
            names.append(f"{part}.index.{level}")
            levels.append(dtype)
            level_names.append(name)
        spec["index"] = {"levels": levels, "names": level_names, "multi": index.nlevels > 1}
        spec["index"]["freq"] = _freq(index)
    return spec, arrays, names


def _guarded(where: str, convert: Callable[[], Any]) -> Any:
    """`convert()`, a failure of Arrow to take the values refused as NotStorable."""
    try:
        return convert()
    except NotStorable:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        raise NotStorable(f"{where} cannot be stored exactly ({exc})") from None
    except Exception as exc:  # pyarrow's errors (ArrowException subclasses)
        if type(exc).__module__.startswith("pyarrow"):
            raise NotStorable(f"{where} cannot be stored exactly ({exc})") from None
        raise


def _part_of(
    spec: dict[str, Any], table: Any, part: str, x_index: pd.Index | None
) -> pd.DataFrame | pd.Series:
    dtypes = spec["dtypes"]
    columns = [_from_arrow(_chunk(table.column(f"{part}.{i}")), d) for i, d in enumerate(dtypes)]
    index_spec = spec["index"]
    if index_spec == "x":
        index = x_index
    elif "levels" in index_spec:
        levels = [
            pd.Index(
                _from_arrow(_chunk(table.column(f"{part}.index.{i}")), d),
                dtype=_level_dtype(d),
                copy=False,
            )
            for i, d in enumerate(index_spec["levels"])
        ]
        level_names = [_label_of(n) for n in index_spec["names"]]
        if index_spec["multi"]:
            index = pd.MultiIndex.from_arrays(levels, names=level_names)
        else:
            index = levels[0].rename(level_names[0])
            if index_spec["freq"] is not None:
                index.freq = index_spec["freq"]
    else:
        index = _axis_of(index_spec)
    if spec["kind"] == "series":
        return pd.Series(columns[0], index=index, name=_label_of(spec["name"]), copy=False)
    labels = _axis_of(spec["columns"])
    frame = pd.DataFrame(dict(enumerate(columns)), index=index)
    frame.columns = labels
    return frame


def _freq(index: pd.Index) -> str | None:
    """The frequency a DatetimeIndex or TimedeltaIndex carries (as `pd.date_range` sets)."""
    freq = getattr(index, "freqstr", None)
    return None if isinstance(index, pd.PeriodIndex) else freq


def _level_dtype(spec: dict[str, Any]) -> Any:
    # NOTE: without it pandas would infer a str Index from an object column of strings.
    return object if spec.get("numpy") == "|O" else None


def _chunk(column: Any) -> Any:
    """One Arrow array from an array or a chunked one (without a copy when it has one chunk)."""
    if not hasattr(column, "num_chunks"):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _load_pyarrow() -> Any:
    from mlserver.frames.bulk import load_pyarrow

    try:
        return load_pyarrow()
    except UnsupportedMediaType:
        raise NotStorable(
            "storing training data needs pyarrow on the server (pip install ml-server[arrow])"
        ) from None


def encode(x: pd.DataFrame, y: Target) -> Encoded:
    """x and y as one blob that `decode` gives back exactly; NotStorable otherwise.

    PERF: the check decodes the blob and compares bytes column by column; for 1M x 10
    float64 rows and an int label, encoding with the check takes ~0.3 s on 2 cores.
    """
    pa = _load_pyarrow()
    meta: dict[str, Any] = {"format": FORMAT}
    arrays, names = [], []
    for part, data, x_index in (("x", x, None), ("y", y, x.index)):
        if data is None:
            meta[part] = None
            continue
        if len(data) != len(x):
            raise NotStorable(f"x has {len(x)} rows but y has {len(data)}")
        spec, part_arrays, part_names = _part_arrays(pa, part, data, x_index)
        meta[part] = spec
        arrays += part_arrays
        names += part_names
    schema = pa.schema(
        [pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)],
        metadata={_META: orjson.dumps(meta)},
    )
    table = pa.Table.from_arrays([_chunk(a) for a in arrays], schema=schema)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", compression_level=1))
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    blob = sink.getvalue().to_pybytes()
    x_back, y_back = decode(blob)
    problem = _difference("x", x, x_back) or _difference("y", y, y_back)
    if problem:
        raise NotStorable(f"{problem}; the data would not be given back exactly")
    raw = int(np.sum(x.memory_usage(deep=True)))
    raw += 0 if y is None else int(np.sum(y.memory_usage(deep=True)))
    return Encoded(blob, len(x), x.shape[1], raw)


def decode(blob: bytes) -> tuple[pd.DataFrame, Target]:
    """The x and y `encode` stored in `blob`.

    Raises NotStorable when `blob` is not such a dataset (the store's checksum has already
    told a damaged blob apart by then).
    """
    pa = _load_pyarrow()
    try:
        table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
        meta = orjson.loads((table.schema.metadata or {})[_META])
    except Exception as exc:
        raise NotStorable(f"not a stored dataset ({exc})") from None
    if meta.get("format") != FORMAT:
        raise NotStorable(f"stored dataset of unknown format {meta.get('format')!r}")
    x = _part_of(meta["x"], table, "x", None)
    y = None if meta["y"] is None else _part_of(meta["y"], table, "y", x.index)
    return x, y  # type: ignore[return-value]


# -- exact comparison -------------------------------------------------------------------


def _difference(part: str, a: Any, b: Any) -> str | None:
    """How b differs from a (None: not at all): kind, labels, index, dtypes, values."""
    if a is None or b is None:
        return None if a is b else f"{part} changes from {type(a).__name__}"
    if type(a) is not type(b):
        return f"{part} changes from {type(a).__name__} to {type(b).__name__}"
    if isinstance(a, pd.Series):
        if _label_spec(a.name) != _label_spec(b.name):
            return f"the name of {part} changes"
        pairs = [(part if a.name is None else f"{part} ({a.name!r})", _values(a), _values(b))]
    else:
        problem = _same_index(a.columns, b.columns)
        if problem:
            return f"{part}'s columns: {problem}"
        pairs = [
            (f"{part} column {c!r}", _values(a.iloc[:, i]), _values(b.iloc[:, i]))
            for i, c in enumerate(a.columns)
        ]
    problem = _same_index(a.index, b.index)
    if problem:
        return f"{part}'s index: {problem}"
    for where, u, v in pairs:
        problem = _same_values(u, v)
        if problem:
            return f"{where}: {problem}"
    return None


def _same_index(a: pd.Index, b: pd.Index) -> str | None:
    if type(a) is not type(b):
        return f"{type(a).__name__} becomes {type(b).__name__}"
    if [_label_spec(n) for n in a.names] != [_label_spec(n) for n in b.names]:
        return "its names change"
    if _freq(a) != _freq(b):
        return "its frequency changes"
    if isinstance(a, pd.RangeIndex):
        same = (a.start, a.stop, a.step) == (b.start, b.stop, b.step)
        return None if same else "its range changes"
    for level in range(a.nlevels):
        problem = _same_values(
            _values(a.get_level_values(level)), _values(b.get_level_values(level))
        )
        if problem:
            return problem
    return None


def _same_values(a: Any, b: Any) -> str | None:
    """How array b differs from array a, bit for bit where numpy holds the values."""
    if _dtype_spec(a.dtype) != _dtype_spec(b.dtype) or a.dtype != b.dtype:
        return f"dtype {a.dtype} becomes {b.dtype}"
    if len(a) != len(b):
        return "its length changes"
    kind = _kind(a.dtype)
    if kind == "numpy":
        u, v = np.asarray(a), np.asarray(b)
        same = np.array_equal(u.view(f"u{u.itemsize}"), v.view(f"u{v.itemsize}"))
    elif kind == "object":
        same = _same_objects(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    elif kind == "masked":
        mask = np.asarray(a._mask)
        u, v = a._data[~mask], b._data[~mask]
        same = np.array_equal(mask, b._mask) and np.array_equal(
            u.view(f"u{u.itemsize}"), v.view(f"u{v.itemsize}")
        )
    elif kind == "string":
        pa = _load_pyarrow()
        same = _arrow_strings(pa, a).equals(_arrow_strings(pa, b))
    elif kind == "datetimetz":
        same = np.array_equal(a.asi8, b.asi8)
    elif kind == "category":
        problem = _same_values(_values(a.categories), _values(b.categories))
        same = problem is None and np.array_equal(a.codes, b.codes)
    else:
        return f"dtype {a.dtype} is not stored"
    return None if same else "its values change"


def _same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    if list(map(type, a)) != list(map(type, b)):
        return False
    for u, v in zip(a, b, strict=True):
        if isinstance(u, float):
            if struct.pack("<d", u) != struct.pack("<d", v):
                return False
        elif u is not pd.NA and u != v:
            return False
    return True


# -- the content digest -----------------------------------------------------------------


def content_digest(x: pd.DataFrame, y: Target) -> str:
    """sha256 (64 hex digits) that is equal exactly when x and y are equal: values (numpy
    columns bit for bit), column labels and their types, dtypes, the index, y's kind.

    Needs no pyarrow and does not depend on the stored encoding.
    PERF: numpy columns are hashed as their bytes (~45 ms for 1M x 10 float64, faster than
    `hash_pandas_object`); object and string columns through `pandas.util.hash_array`.
    """
    digest = hashlib.sha256(b"mlserver-stored-data-v1\0")
    for part in (x, y):
        if part is None:
            _frame_bytes(digest, b"none")
            continue
        if isinstance(part, pd.Series):
            header: dict[str, Any] = {"kind": "series", "name": _label_spec(part.name)}
            columns = [_values(part)]
        else:
            header = {"kind": "frame", "columns": _axis_spec(part.columns, "columns", False)}
            columns = [_values(part.iloc[:, i]) for i in range(part.shape[1])]
        index = part.index
        if isinstance(index, pd.RangeIndex):
            header["index"] = _axis_spec(index, "index", False)
        else:
            levels = [index.get_level_values(i) for i in range(index.nlevels)]
            header["index"] = {
                "class": type(index).__name__,
                "names": [_label_spec(n) for n in index.names],
                "freq": _freq(index),
            }
            columns += [_values(level) for level in levels]
        header["dtypes"] = [_dtype_spec(c.dtype) for c in columns]
        header["rows"] = len(part)
        _frame_bytes(digest, orjson.dumps(header))
        for values in columns:
            _hash_values(digest, values)
    return digest.hexdigest()


def _frame_bytes(digest: Any, data: bytes | memoryview) -> None:
    """One length-prefixed item, so no two sequences of items hash alike."""
    view = memoryview(data).cast("B")
    digest.update(len(view).to_bytes(8, "little"))
    digest.update(view)


def _raw(values: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(values).view(np.uint8).reshape(-1))


def _hash_values(digest: Any, values: Any) -> None:
    kind = _kind(values.dtype)
    if kind == "numpy":
        _frame_bytes(digest, _raw(np.asarray(values)))
    elif kind == "object":
        cells = np.asarray(values, dtype=object)
        types = sorted({type(v) for v in cells}, key=lambda t: (t.__module__, t.__qualname__))
        codes = {t: i for i, t in enumerate(types)}
        names = [f"{t.__module__}.{t.__qualname__}" for t in types]
        _frame_bytes(digest, orjson.dumps(names))
        _frame_bytes(digest, _raw(np.fromiter((codes[type(v)] for v in cells), np.int32)))
        _frame_bytes(digest, _raw(pd.util.hash_array(cells)))
    elif kind == "masked":
        mask = np.asarray(values._mask)
        data = np.where(mask, np.zeros((), values._data.dtype), values._data)
        _frame_bytes(digest, _raw(mask))
        _frame_bytes(digest, _raw(data))
    elif kind == "string":
        mask = np.asarray(values.isna())
        text = values.to_numpy(dtype=object, na_value="")
        _frame_bytes(digest, _raw(mask))
        _frame_bytes(digest, _raw(pd.util.hash_array(text)))
    elif kind == "datetimetz":
        _frame_bytes(digest, _raw(values.asi8))
    elif kind == "category":
        _frame_bytes(digest, _raw(np.asarray(values.codes)))
        _hash_values(digest, _values(values.categories))
        _frame_bytes(digest, orjson.dumps(_dtype_spec(values.categories.dtype)))
    else:  # not storable: hashed as well as pandas can, nulls apart
        _frame_bytes(digest, _raw(np.asarray(pd.isna(values))))
        series = pd.Series(values, copy=False)
        _frame_bytes(digest, _raw(pd.util.hash_pandas_object(series, index=False).to_numpy()))


# -- answers ------------------------------------------------------------------------------


def _split(data: pd.DataFrame | pd.Series) -> dict[str, Any]:
    """orient split at full precision; the index left out when it is 0..n-1, unnamed, so
    the answer sent back decodes to that RangeIndex again."""
    from mlserver.frames.encode import encode_frame
    from mlserver.frames.labels import default_index

    if isinstance(data, pd.Series):
        value: dict[str, Any] = {"name": data.name, "index": data.index.tolist()}
        value["data"] = data.tolist()
    else:
        value = encode_frame(data, "split")
    if default_index(data.index):
        del value["index"]
    return value


def json_answer(x: pd.DataFrame, y: Target) -> dict:
    """The JSON answer of `GET .../data`: {"x": split, "y": split | None, "orient": "split"},
    floats at full precision (write it with `mlserver.frames.encode.dumps`): sent back as
    a fit's body, it decodes to these x and y."""
    return {"x": _split(x), "y": None if y is None else _split(y), "orient": "split"}


def _target_names(x: pd.DataFrame, y: pd.Series | pd.DataFrame) -> list[str]:
    """The names y's columns take in an Arrow answer: their own unless an x column (or an
    earlier target) has it or `?target=` could not name it back (a comma, surrounding
    spaces); then NAME_target, NAME_target_2, ..."""
    taken = {label(str(c)) for c in x.columns}
    labels = [y.name] if isinstance(y, pd.Series) else list(y.columns)
    names = []
    for value in labels:
        base = _UNNAMED_TARGET if value is None else label_text(value)
        name, counter = base, 1
        while label(name) in taken or "," in name or name != name.strip() or not name:
            counter += 1
            stem = base.replace(",", "_").strip() or _UNNAMED_TARGET
            name = f"{stem}_target" if counter == 2 else f"{stem}_target_{counter - 1}"
        taken.add(label(name))
        names.append(name)
    return names


def arrow_answer(x: pd.DataFrame, y: Target) -> bytes:
    """One Arrow stream of x's columns then y's, the target columns named in the schema
    metadata (b"mlserver.targets", a JSON list), as a fit body takes them back: an Arrow
    PUT with `?target=` set to those names, comma-separated, gives these x and y.

    A target whose name an x column has already is written as NAME_target (NAME_target_2,
    ... while that is taken too), and so is one `?target=` could not name (a comma or
    surrounding spaces in it); an unnamed 1-d y is written as "y". The row index goes as
    pandas writes it to Arrow (an index other than 0..n-1 as columns of its own).

    Raises UnprocessableData when a column has values Arrow cannot hold as one type (an
    object column of mixed types): such data can be read as JSON only.
    """
    from mlserver.frames.bulk import load_pyarrow

    pa = load_pyarrow()
    frame = x.set_axis([label_text(c) for c in x.columns], axis=1)
    targets: list[str] = []
    if y is not None:
        targets = _target_names(x, y)
        values = y.to_frame() if isinstance(y, pd.Series) else y
        frame = pd.concat([frame, values.set_axis(targets, axis=1).set_axis(x.index)], axis=1)
    try:
        table = pa.Table.from_pandas(frame)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise UnprocessableData(
            f"this data cannot be written as Arrow ({exc}); ask for it as JSON"
        ) from None
    metadata = dict(table.schema.metadata or {})
    metadata[TARGETS] = orjson.dumps(targets)
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
