"""Tensors of the Open Inference Protocol (V2): a request's inputs into Rows for the service,
a model's outputs into response tensors, as JSON data or in Triton's binary tensor extension.

A request body is JSON, or (with an `Inference-Header-Content-Length` header) that much JSON
followed by the raw bytes of the inputs whose `parameters.binary_data_size` says so, in the
order they are listed: little-endian, row-major, BYTES elements each behind a 4-byte length.
Answers use the same framing for the outputs asked for with `binary_data` (or all of them,
with the request's `binary_data_output`).

Inputs become the rows a model takes in two forms:

- one tensor of shape `[rows, columns]`, the training columns in order (any name);
- one `[rows]` or `[rows, 1]` tensor per training column, named after it, in any order
  (MLServer's pandas codec, `parameters.content_type = "pd"`, which forces this form).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import simdjson

from mlserver.errors import InvalidPayload, SchemaMismatch
from mlserver.frames.json import LAZY_BODY_BYTES, distinct_keys, lazy_document, plain
from mlserver.frames.labels import names
from mlserver.frames.rows import Rows
from mlserver.frames.schema import Schema, mismatch

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferRequest",
    "Tensor",
    "column_datatype",
    "datatype_of",
    "encode_response",
    "output_tensor",
    "parse_request",
]

#: The request and response header that says how much of the body is JSON.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: V2 datatypes and the numpy dtypes they hold (BYTES: Python str/bytes objects).
DATATYPES: dict[str, Any] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: (numpy kind, itemsize) -> the V2 datatype of such values.
_BY_KIND = {(d.kind, d.itemsize): name for name, d in DATATYPES.items() if name != "BYTES"}
_LENGTH = struct.Struct("<I")
_FLOATS = frozenset({"FP16", "FP32", "FP64"})


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, datatype, shape and values (shaped as `shape`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request: its inputs, which outputs it asks for (None: the
    default), and which of those go back as binary data."""

    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[str, ...] | None
    binary: frozenset[str]
    binary_all: bool
    content_type: str | None

    def rows(self, schema: Schema) -> Rows:
        """The inputs as rows of the training schema's columns (not yet conformed)."""
        return _rows(self.inputs, schema, self.content_type)


def parse_request(raw: bytes, header_length: str | None) -> InferRequest:
    """A request body (JSON, or JSON then binary tensors) decoded; InvalidPayload naming
    what is malformed."""
    head, binary = _split(raw, header_length)
    body = _document(head)
    if not isinstance(body, dict):
        raise InvalidPayload("the inference request must be a JSON object")
    unknown = sorted(set(body) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise InvalidPayload(f"unknown fields in the inference request: {', '.join(unknown)}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidPayload("id must be a string", "id")
    parameters = _parameters(body.get("parameters"), "parameters")
    content_type = parameters.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise InvalidPayload("parameters.content_type must be a string", "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidPayload("inputs must be a non-empty list of tensors", "inputs")
    tensors, offset = [], 0
    for position, entry in enumerate(inputs):
        tensor, offset = _input(entry, position, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise InvalidPayload(
            f"the body has {len(binary) - offset} bytes of binary data no input claims "
            "(binary_data_size)"
        )
    if len({t.name for t in tensors}) != len(tensors):
        raise InvalidPayload("input names must be unique", "inputs")
    outputs, wanted = _outputs(body.get("outputs"))
    return InferRequest(
        request_id,
        tuple(tensors),
        outputs,
        wanted,
        bool(parameters.get("binary_data_output")),
        content_type,
    )


def _document(head: bytes) -> Any:
    """The request's JSON. PERF: a large one is read by simdjson, float tensors' data
    straight from the text into arrays (a 10k x 10 FP64 tensor: ~12 ms through Python
    lists, ~3 ms so)."""
    if len(head) >= LAZY_BODY_BYTES:
        document = lazy_document(head)
        if isinstance(document, simdjson.Object):
            found = _lazy_request(document)
            if found is not None:
                return found
    try:
        return orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"the inference request is not valid JSON: {exc}") from None


def _lazy_request(document: Any) -> dict[str, Any] | None:
    """The request as Python objects but float tensors' data, which become float64 arrays;
    None where a key repeats (simdjson and orjson would read it differently)."""
    keys = distinct_keys(document)
    if keys is None:
        return None
    body: dict[str, Any] = {}
    for key in keys:
        value = document[key]
        if key != "inputs" or not isinstance(value, simdjson.Array):
            body[key] = plain(value)
            continue
        inputs = []
        for entry in value:
            if not isinstance(entry, simdjson.Object):
                inputs.append(plain(entry))
                continue
            fields = distinct_keys(entry)
            if fields is None:
                return None
            found = {name: plain(entry[name]) for name in fields if name != "data"}
            if "data" in fields:
                found["data"] = _lazy_data(entry["data"], found.get("datatype"))
            inputs.append(found)
        body[key] = inputs
    return body


def _lazy_data(data: Any, datatype: Any) -> Any:
    """Float data as one float64 array (nested lists flattened, row-major), else as Python
    objects (nulls, strings and booleans take the checked path)."""
    if datatype in _FLOATS and isinstance(data, simdjson.Array):
        try:
            return np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError):
            pass
    return plain(data)


def _split(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(raw):
        raise InvalidPayload(
            f"{HEADER_LENGTH} must be the length of the JSON part of the body (1 to "
            f"{len(raw)}), got {header_length!r}"
        )
    return raw[:length], raw[length:]


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload(f"{where} must be an object", "parameters")
    return value


def _input(entry: Any, position: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{position}]"
    if not isinstance(entry, dict):
        raise InvalidPayload(f"{where} must be an object", "inputs")
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidPayload(f"{where}.name must be a non-empty string", "inputs")
    where = f"input {name!r}"
    if datatype not in DATATYPES:
        raise InvalidPayload(
            f"{where}: datatype must be one of {', '.join(DATATYPES)}, got {datatype!r}", "inputs"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidPayload(f"{where}: shape must be a list of sizes, got {shape!r}", "inputs")
    if len(shape) > 2:
        raise InvalidPayload(f"{where}: shape {shape} has more than 2 dimensions", "inputs")
    parameters = _parameters(entry.get("parameters"), f"{where}: parameters")
    size = parameters.get("binary_data_size")
    count = math.prod(shape)
    if size is not None:
        if "data" in entry:
            raise InvalidPayload(f"{where}: binary_data_size and data cannot go together")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidPayload(f"{where}: binary_data_size must be a size in bytes")
        if offset + size > len(binary):
            raise InvalidPayload(
                f"{where}: binary_data_size {size} goes past the end of the body's binary data"
            )
        values = _from_bytes(binary[offset : offset + size], datatype, count, where)
        offset += size
    else:
        if "data" not in entry:
            raise InvalidPayload(f"{where} has no data (nor binary_data_size)", "inputs")
        values = _from_json(entry["data"], datatype, count, where)
    return Tensor(name, datatype, tuple(shape), values.reshape(shape), parameters), offset


def _from_bytes(data: bytes, datatype: str, count: int, where: str) -> np.ndarray:
    if datatype == "BYTES":
        items, at = [], 0
        while at < len(data):
            if at + 4 > len(data):
                raise InvalidPayload(f"{where}: a BYTES element's length is cut short")
            (length,) = _LENGTH.unpack_from(data, at)
            at += 4
            if at + length > len(data):
                raise InvalidPayload(f"{where}: a BYTES element goes past its binary data")
            items.append(_text(data[at : at + length]))
            at += length
        values = np.empty(len(items), dtype=object)
        values[:] = items
    else:
        dtype = DATATYPES[datatype]
        if len(data) != count * dtype.itemsize:
            raise InvalidPayload(
                f"{where}: {len(data)} bytes of binary data for {count} {datatype} elements "
                f"({count * dtype.itemsize} bytes)"
            )
        values = np.frombuffer(data, dtype=dtype)
    if len(values) != count:
        raise InvalidPayload(f"{where}: {len(values)} elements for a shape of {count}")
    return values


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidPayload("BYTES elements must be UTF-8 text") from None


def _from_json(data: Any, datatype: str, count: int, where: str) -> np.ndarray:
    if isinstance(data, np.ndarray):  # float data simdjson read (see `_lazy_data`)
        if len(data) != count:
            raise InvalidPayload(f"{where}: {len(data)} elements of data for a shape of {count}")
        with np.errstate(over="ignore"):
            return data.astype(DATATYPES[datatype])
    if not isinstance(data, list):
        data = [data]
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidPayload(f"{where}: {len(flat)} elements of data for a shape of {count}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidPayload(f"{where}: BYTES data must be strings")
        values = np.empty(len(flat), dtype=object)
        values[:] = flat
        return values
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidPayload(f"{where}: BOOL data must be true or false")
        return np.asarray(flat, dtype=dtype)
    if dtype.kind in "iu":
        return _integers(flat, dtype, datatype, where)
    # PERF: numpy reads a list of plain numbers in one pass; only nulls (missing values)
    # and anything odd take the checked path.
    array = np.array(flat) if flat else np.empty(0, dtype=dtype)
    if array.dtype.kind == "O":
        if not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in flat
        ):
            raise InvalidPayload(f"{where}: {datatype} data must be numbers")
        # NOTE: null stands for NaN (a missing value), where the model takes one.
        array = np.array([np.nan if v is None else v for v in flat], dtype=np.float64)
    elif array.dtype.kind not in "iuf" or any(type(v) is bool for v in flat):
        raise InvalidPayload(f"{where}: {datatype} data must be numbers")
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _integers(flat: list[Any], dtype: np.dtype, datatype: str, where: str) -> np.ndarray:
    """Integer data, exactly: numpy would read an integer above int64's range as a float."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise InvalidPayload(f"{where}: {datatype} data must be numbers")
    if not all(isinstance(v, int) or v.is_integer() for v in flat):
        raise InvalidPayload(f"{where}: {datatype} data must be whole numbers")
    values = [int(v) for v in flat]
    info = np.iinfo(dtype)
    if values and (min(values) < info.min or max(values) > info.max):
        raise InvalidPayload(f"{where}: a value is out of {datatype}'s range")
    return np.array(values, dtype=dtype)


def _flatten(data: list[Any]) -> list[Any]:
    """Nested lists in row-major order, flat (V2 allows either)."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _outputs(value: Any) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    if value is None:
        return None, frozenset()
    if not isinstance(value, list) or not value:
        raise InvalidPayload("outputs must be a non-empty list of {name} objects", "outputs")
    found, binary = [], set()
    for entry in value:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise InvalidPayload("each of outputs must be an object with a name", "outputs")
        parameters = _parameters(entry.get("parameters"), f"output {name!r}: parameters")
        if parameters.get("binary_data"):
            binary.add(name)
        found.append(name)
    if len(set(found)) != len(found):
        raise InvalidPayload("output names must be unique", "outputs")
    return tuple(found), frozenset(binary)


def _rows(inputs: Sequence[Tensor], schema: Schema, content_type: str | None) -> Rows:
    columns = schema.columns
    if len(inputs) == 1 and content_type != "pd":
        (tensor,) = inputs
        # A [rows, 1] tensor named after one of several columns is that column (the pandas
        # codec, one input given); any other 2-d tensor holds every column.
        named = tensor.name in {str(c) for c in columns}
        if len(tensor.shape) == 2 and (tensor.shape[1] != 1 or not named or len(columns) == 1):
            if tensor.shape[1] != len(columns):
                raise SchemaMismatch(
                    f"input {tensor.name!r} has {tensor.shape[1]} columns; the model was "
                    f"trained on {len(columns)} ({names(list(columns))})"
                )
            if schema.numeric and tensor.datatype == "BYTES":
                raise SchemaMismatch(
                    f"input {tensor.name!r} is BYTES; the model was trained on numbers"
                )
            return Rows(_plain(tensor.values, schema), list(columns), orient="values")
    return _columns(inputs, schema)


def _plain(values: np.ndarray, schema: Schema) -> np.ndarray:
    """A tensor as the array a model's fast path takes, where its columns are all float64."""
    if schema.numeric and values.dtype.kind in "biuf":
        return np.ascontiguousarray(values, dtype=np.float64)
    return values


def _columns(inputs: Sequence[Tensor], schema: Schema) -> Rows:
    by_name = {str(c): c for c in schema.columns}
    given = {t.name: t for t in inputs}
    missing = [str(c) for c in schema.columns if str(c) not in given]
    unexpected = [name for name in given if name not in by_name]
    if missing or unexpected:
        raise mismatch(
            "the inputs are not the training columns, one tensor each",
            "inputs",
            missing,
            unexpected,
        )
    lengths = set()
    data = {}
    for column in schema.columns:
        tensor = given[str(column)]
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise InvalidPayload(
                f"input {tensor.name!r} has shape {list(tensor.shape)}: a column is one "
                "[rows] or [rows, 1] tensor",
                "inputs",
            )
        values = tensor.values.reshape(-1)
        lengths.add(len(values))
        data[column] = values
    if len(lengths) > 1:
        raise InvalidPayload(f"the inputs have different numbers of rows: {sorted(lengths)}")
    frame = pd.DataFrame(data, columns=schema.column_index)
    return Rows(frame, orient="split")


def column_datatype(dtype: str) -> str:
    """The V2 datatype of a training column's dtype (as a schema names it): BYTES for text,
    categories, datetimes and anything numpy does not know."""
    try:
        found = np.dtype(dtype)
    except TypeError:  # pandas' own dtypes: "str", "category", "Int64", ...
        return "BYTES"
    return _BY_KIND.get((found.kind, found.itemsize), "BYTES")


def datatype_of(values: np.ndarray) -> str:
    """The V2 datatype of an output's values (BYTES for text and anything mixed)."""
    kind = (values.dtype.kind, values.dtype.itemsize)
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if values.dtype == object:
        inferred = pd.api.types.infer_dtype(values.reshape(-1), skipna=False)
        if inferred == "integer":
            return "INT64"
        if inferred in ("floating", "mixed-integer-float"):
            return "FP64"
        if inferred == "boolean":
            return "BOOL"
    return "BYTES"


def output_tensor(name: str, rows: Rows) -> Tensor:
    """A method's output (the rows an answer carries) as a V2 output tensor: `[rows]` for
    one column, else `[rows, columns]`; `parameters.columns` names the columns."""
    values = rows.array if not rows.framed else rows.frame.to_numpy()
    datatype = datatype_of(values)
    if datatype == "BYTES":
        values = values.astype(str).astype(object)
    elif values.dtype == object:
        values = values.astype(DATATYPES[datatype])
    labels = [
        label if isinstance(label, str | int | float) else str(label) for label in rows.labels
    ]
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    return Tensor(name, datatype, values.shape, values, {"columns": labels})


def encode_response(
    head: dict[str, Any], outputs: Sequence[Tensor], binary: set[str] | frozenset[str]
) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON part when outputs go as binary data
    (None: all JSON)."""
    chunks: list[bytes] = []
    entries = []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        parameters = dict(tensor.parameters)
        if tensor.name in binary:
            data = _to_bytes(tensor)
            parameters["binary_data_size"] = len(data)
            chunks.append(data)
        else:
            entry["data"] = _json_data(tensor)
        entry["parameters"] = parameters
        entries.append(entry)
    text = orjson.dumps({**head, "outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)


def _json_data(tensor: Tensor) -> Any:
    values = tensor.values.reshape(-1)
    if tensor.datatype == "BYTES":
        return values.tolist()
    if tensor.datatype in ("FP16", "FP32", "FP64"):
        # NOTE: orjson writes NaN and infinities as null: a missing value, as in the inputs.
        return values.astype(np.float64)
    return values


def _to_bytes(tensor: Tensor) -> bytes:
    values = tensor.values.reshape(-1)
    if tensor.datatype == "BYTES":
        parts = []
        for value in values.tolist():
            encoded = value.encode() if isinstance(value, str) else bytes(value)
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=DATATYPES[tensor.datatype]).tobytes()
