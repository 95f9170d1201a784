"""Training data as the store keeps it: `x` and `y` of a fit or update, encoded once, given
back exactly, and named by their content.

The stored form is one Arrow IPC stream, zstd-compressed, never a pickle: whoever can write
the database must not be able to run code through a stored dataset. Each column of x and y,
and a row index other than a range, is one Arrow column named by position; what Arrow has no
word for (the pandas dtype, the labels and their types, the index, y's kind) is JSON in the
schema metadata. `encode` decodes what it wrote and compares it with x and y, so data it
cannot give back exactly (an object column mixing types, labels of other types) is refused
with NotStorable, naming the column, never stored changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlserver.errors import NotStorable, UnsupportedMediaType
from mlserver.frames.encode import encode_frame
from mlserver.frames.keys import hash_frames

__all__ = ["FORMAT", "TARGETS", "Encoded", "arrow_answer", "content_digest", "decode", "encode"]
__all__ += ["json_answer"]

#: The name of the encoding, stored beside each dataset.
FORMAT = "arrow-ipc-zstd-1"
#: Schema metadata of `arrow_answer`: the target columns, a JSON list of names.
TARGETS = b"mlserver.targets"
_META = b"mlserver.stored"
#: The name `arrow_answer` gives an unnamed 1-d y (as mlserver.provenance.DEFAULT_TARGET).
_UNNAMED = "y"

Target = pd.Series | pd.DataFrame | None


@dataclass(frozen=True)
class Encoded:
    blob: bytes
    rows: int
    columns: int
    #: Bytes of x and y in memory (pandas' deep memory usage).
    raw_bytes: int


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError:
        raise NotStorable(
            "storing training data needs pyarrow on the server (pip install ml-server[arrow])"
        ) from None
    return pyarrow


def content_digest(x: pd.DataFrame, y: Target) -> str:
    """sha256 (64 hex digits) equal exactly when x and y are equal, labels, dtypes, index
    and y's kind included; independent of the stored encoding."""
    digest = hashlib.sha256(b"mlserver-dataset-v1\0")
    hash_frames(digest, x, y)
    return digest.hexdigest()


# -- labels: JSON with their type ---------------------------------------------------------


def _tag(value: Any, where: str) -> list[Any] | None:
    if value is None:
        return None
    for kind, types in (("bool", (bool, np.bool_)), ("int", (int, np.integer))):
        if isinstance(value, types):
            return [kind, int(value) if kind == "int" else bool(value)]
    if isinstance(value, (float, np.floating)):
        return ["float", float(value)]
    if isinstance(value, str):
        return ["str", value]
    raise NotStorable(f"{where}: a label of type {type(value).__name__} is not stored")


def _untag(tagged: list[Any] | None) -> Any:
    if tagged is None:
        return None
    kind, value = tagged
    return {"bool": bool, "int": int, "float": float, "str": str}[kind](value)


# -- columns ------------------------------------------------------------------------------


def _array(pa: Any, values: pd.Series | pd.Index, where: str) -> Any:
    """One column as an Arrow array; object columns only of str (and None) cells."""
    if values.dtype == object:
        kinds = {type(v) for v in values if v is not None}
        if not kinds <= {str}:
            found = ", ".join(sorted(k.__name__ for k in kinds))
            raise NotStorable(f"{where} holds values of types {found}: only one type is stored")
        return pa.array(list(values), type=pa.string())
    try:
        return pa.Array.from_pandas(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise NotStorable(f"{where} of dtype {values.dtype}: {exc}") from None


def _column(array: Any, dtype: str) -> pd.Series:
    values = array.to_pandas()
    if dtype == "object":
        return pd.Series(values, dtype=object)
    return pd.Series(values).astype(pd.api.types.pandas_dtype(dtype))


def _part(pa: Any, frame: pd.DataFrame, prefix: str, arrays: dict[str, Any]) -> dict[str, Any]:
    """Put `frame`'s columns (and index) into `arrays`; the metadata to rebuild it."""
    what = "x" if prefix == "x" else "y"
    meta: dict[str, Any] = {"columns": [], "dtypes": []}
    if isinstance(frame.columns, pd.RangeIndex):
        columns = frame.columns
        meta["columns_range"] = [columns.start, columns.stop, columns.step]
    for i, (name, series) in enumerate(frame.items()):
        where = f"{what} column {name!r}"
        meta["columns"].append(_tag(name, where))
        meta["dtypes"].append(str(series.dtype))
        arrays[f"{prefix}.{i}"] = _array(pa, series, where)
    index = frame.index
    if isinstance(index, pd.MultiIndex):
        raise NotStorable(f"{what} has a MultiIndex, which is not stored")
    meta["index_name"] = _tag(index.name, f"{what}'s index name")
    if isinstance(index, pd.RangeIndex):
        meta["range"] = [index.start, index.stop, index.step]
    else:
        meta["index_dtype"] = str(index.dtype)
        arrays[f"{prefix}.index"] = _array(pa, index, f"{what}'s index")
    return meta


def _rebuild(table: Any, meta: dict[str, Any], prefix: str) -> pd.DataFrame:
    columns = {
        i: _column(table.column(f"{prefix}.{i}"), dtype) for i, dtype in enumerate(meta["dtypes"])
    }
    if "range" in meta:
        index: pd.Index = pd.RangeIndex(*meta["range"])
    else:
        values = _column(table.column(f"{prefix}.index"), meta["index_dtype"])
        index = pd.Index(values, dtype=values.dtype)
    index.name = _untag(meta["index_name"])
    frame = pd.DataFrame({i: s.set_axis(index) for i, s in columns.items()}, index=index)
    if "columns_range" in meta:
        frame.columns = pd.RangeIndex(*meta["columns_range"])
    else:
        frame.columns = pd.Index([_untag(c) for c in meta["columns"]])
    return frame


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (
        a.shape == b.shape
        and list(map(type, a.columns)) == list(map(type, b.columns))
        and a.columns.equals(b.columns)
        and a.columns.dtype == b.columns.dtype
        and list(a.dtypes) == list(b.dtypes)
        and type(a.index) is type(b.index)
        and a.index.dtype == b.index.dtype
        and a.index.names == b.index.names
        and a.index.equals(b.index)
        and a.equals(b)
        and all(
            [type(v) for v in a[c]] == [type(v) for v in b[c]]
            for c in a.columns[[dtype == np.dtype(object) for dtype in a.dtypes]]
        )
    )


# -- the blob -----------------------------------------------------------------------------


def encode(x: pd.DataFrame, y: Target) -> Encoded:
    """x and y as one blob that `decode` gives back exactly; NotStorable otherwise."""
    pa = _pyarrow()
    arrays: dict[str, Any] = {}
    meta: dict[str, Any] = {"x": _part(pa, x, "x", arrays), "y": None}
    if y is not None:
        frame = y.to_frame() if isinstance(y, pd.Series) else y
        meta["y"] = _part(pa, frame, "y", arrays)
        meta["y"]["series"] = isinstance(y, pd.Series)
        if isinstance(y, pd.Series):
            meta["y"]["name"] = _tag(y.name, "y's name")
    table = pa.table(arrays) if arrays else pa.table({"x.none": pa.nulls(len(x))})
    table = table.replace_schema_metadata({_META: orjson.dumps(meta)})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    blob = sink.getvalue().to_pybytes()
    x_back, y_back = decode(blob)
    if not _same(x, x_back):
        raise NotStorable("x would not come back exactly from its stored form")
    if not _same_target(y, y_back):
        raise NotStorable("y would not come back exactly from its stored form")
    raw = int(x.memory_usage(deep=True).sum())
    if y is not None:
        raw += int(np.sum(y.memory_usage(deep=True)))
    return Encoded(blob, len(x), x.shape[1], raw)


def _same_target(y: Target, back: Target) -> bool:
    if y is None or back is None:
        return y is back
    if type(y) is not type(back):
        return False
    if isinstance(y, pd.Series):
        return type(y.name) is type(back.name) and _same(y.to_frame(), back.to_frame())
    return _same(y, back)


def decode(blob: bytes) -> tuple[pd.DataFrame, Target]:
    """The x and y `encode` stored."""
    pa = _pyarrow()
    table = pa.ipc.open_stream(blob).read_all()
    meta = orjson.loads(table.schema.metadata[_META])
    x = _rebuild(table, meta["x"], "x")
    if meta["y"] is None:
        return x, None
    y = _rebuild(table, meta["y"], "y")
    if meta["y"]["series"]:
        return x, y.iloc[:, 0].rename(_untag(meta["y"]["name"]))
    return x, y


# -- answers ------------------------------------------------------------------------------


def json_answer(x: pd.DataFrame, y: Target) -> dict[str, Any]:
    """The JSON answer of `GET .../data`: {"x": split, "y": split | None, "orient"}, floats
    exact; sent back as a fit's body (orient split), it decodes to the same frames."""
    body: dict[str, Any] = {"x": encode_frame(x, "split"), "y": None, "orient": "split"}
    if isinstance(y, pd.Series):
        split = encode_frame(y.to_frame(), "split")
        body["y"] = {
            "name": y.name,
            "index": split["index"],
            "data": [row[0] for row in split["data"]],
        }
    elif y is not None:
        body["y"] = encode_frame(y, "split")
    return body


def arrow_answer(x: pd.DataFrame, y: Target) -> bytes:
    """One Arrow stream of x's columns then y's, x's index kept, the target columns named in
    the schema metadata (`TARGETS`, a JSON list), as a fit body names them with `target=`.
    An unnamed 1-d y is called "y"; a target named like an x column gets "_y" appended."""
    try:
        import pyarrow as pa
    except ImportError:
        raise UnsupportedMediaType(
            "Arrow answers need pyarrow on the server (pip install ml-server[arrow])"
        ) from None
    frame = x.set_axis([str(c) for c in x.columns], axis=1)
    targets: list[str] = []
    if y is not None:
        ys = y.to_frame(_UNNAMED if y.name is None else y.name) if isinstance(y, pd.Series) else y
        for name, series in ys.items():
            text = str(name)
            while text in frame.columns:
                text += "_y"
            frame[text] = series.to_numpy()
            targets.append(text)
    table = pa.Table.from_pandas(frame)
    metadata = {**(table.schema.metadata or {}), TARGETS: orjson.dumps(targets)}
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
