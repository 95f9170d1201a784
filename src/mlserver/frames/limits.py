"""Bounds on a bulk body, checked from what it declares before any of it is decoded: the
Arrow and Parquet metadata (against decompression bombs), and the shape of decoded rows."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from mlserver.errors import InvalidPayload, UnprocessableData

__all__ = [
    "CELL_BYTES",
    "UNBOUNDED",
    "BulkLimits",
    "check_arrow",
    "check_parquet",
    "check_shape",
    "over",
    "over_decoded",
]


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


def over(parameter: str, what: str, count: int, limit: int, name: str, exact: bool) -> None:
    """UnprocessableData naming the limit `name` when `count` is above `limit`."""
    if count > limit:
        amount = f"{count}" if exact else f"more than {limit}"
        raise UnprocessableData(
            f"{parameter} has {amount} {what}; this server takes at most {limit} ({name})"
        )


def over_decoded(parameter: str, size: int, limits: BulkLimits, exact: bool) -> None:
    if size > limits.decoded_bytes:
        amount = f"{size}" if exact else f"more than {limits.decoded_bytes}"
        raise UnprocessableData(
            f"{parameter} would take {amount} bytes once decoded; this server takes at most "
            f"{limits.decoded_bytes} (max_decoded_bytes)"
        )


def over_width(schema: Any, limits: BulkLimits, parameter: str) -> None:
    """The columns of `schema` that become columns of x (not those pandas keeps its index in)."""
    stored = (schema.pandas_metadata or {}).get("index_columns", [])
    index = {name for name in stored if isinstance(name, str)}
    columns = sum(1 for name in schema.names if name not in index)
    over(parameter, "columns", columns, limits.columns, "max_columns", exact=True)


#: What pandas holds at least per cell of a frame (a float64, an int64, an object pointer).
CELL_BYTES = 8


def check_arrow(pa: Any, raw: bytes, limits: BulkLimits, parameter: str) -> None:
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
    over(parameter, "columns", width, 2 * limits.columns, "max_columns", exact=True)
    over_width(pa.ipc.read_schema(first), limits, parameter)
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
            over(parameter, "rows", rows, limits.rows, "max_rows", exact=False)
        cells += batch.cells
        decoded += _decompressed(batch.buffers, message.body, batch.compressed)
        over_decoded(parameter, max(decoded, cells * CELL_BYTES), limits, exact=False)


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


def check_parquet(file: Any, limits: BulkLimits, parameter: str) -> None:
    """Rows, columns and decoded size of a Parquet file from its footer, before any page is
    read: the rows and values of every column chunk and their uncompressed sizes."""
    metadata = file.metadata
    over_width(file.schema_arrow, limits, parameter)
    over(parameter, "rows", metadata.num_rows, limits.rows, "max_rows", exact=True)
    cells = decoded = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            cells += max(chunk.num_values, row_group.num_rows)
            decoded += chunk.total_uncompressed_size
        over_decoded(parameter, max(decoded, cells * CELL_BYTES), limits, exact=False)


def check_shape(shape: tuple[int, int], max_rows: int, max_columns: int) -> None:
    """UnprocessableData (422) when decoded `x` has more rows or columns than configured."""
    rows, columns = shape
    over("x", "rows", rows, max_rows, "max_rows", exact=True)
    over("x", "columns", columns, max_columns, "max_columns", exact=True)
