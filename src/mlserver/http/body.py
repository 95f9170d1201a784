"""Reading a request body: bounded by `max_body_bytes`, sorted by media type, JSON parsed
(a large predict's `x` lazily, until its training schema is known)."""

from __future__ import annotations

from typing import Any

import falcon
import simdjson

from mlserver.errors import InvalidPayload, PayloadTooLarge, UnsupportedMediaType
from mlserver.frames.json import (
    CONTAINERS,
    LAZY_BODY_BYTES,
    LazyJSON,
    distinct_keys,
    lazy_document,
    loads,
    plain,
)

__all__ = ["ARROW_STREAM", "BULK_MEDIA", "loads_body", "read_body", "read_json"]

#: Media types read as bulk tables, and the format each names.
BULK_MEDIA = {
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "text/csv": "csv",
}
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def loads_body(raw: bytes, lazy: bool = False) -> Any:
    """A JSON request body; with `lazy`, a large one's `x` stays a LazyJSON until its
    training schema is known, so a numeric table goes straight from the text into an array.

    PERF: 10k x 10 numbers: ~10 ms as Python lists then an array (orjson + numpy), ~4 ms
    straight into an array (simdjson). Raises ValueError for text that is not JSON.
    """
    document = lazy_document(raw) if lazy and len(raw) >= LAZY_BODY_BYTES else None
    if not isinstance(document, simdjson.Object) or (keys := distinct_keys(document)) is None:
        return loads(raw, "the request body")
    # NOTE: items() would convert every value; indexing keeps containers lazy.
    body = {name: document[name] for name in keys}
    return {
        name: LazyJSON(value, raw, name, raw.count(b"["))
        if name == "x" and isinstance(value, CONTAINERS)
        else plain(value)
        for name, value in body.items()
    }


def read_body(req: falcon.Request, max_bytes: int, setting: str = "max_body_bytes") -> bytes:
    """The raw body, refused (413) as soon as it is known to be above `max_bytes` (the
    `setting` named in the answer): before reading when its Content-Length says so, else
    once `max_bytes + 1` bytes have come."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(
            f"request body of {length} bytes is above the {max_bytes}-byte limit ({setting})"
        )
    stream: Any = req.bounded_stream
    if length is None and "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        # NOTE: bounded_stream reads nothing without a Content-Length. waitress de-chunks
        # a body and sets one; gunicorn hands the app the chunked stream itself, which
        # ends where the body does.
        stream = req.stream
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is above the {max_bytes}-byte limit ({setting})")
    return raw


def read_json(req: falcon.Request, max_bytes: int, media: str, lazy: bool) -> dict[str, Any]:
    """The JSON object in the body ({} when there is none), bounded by `max_bytes`."""
    raw = read_body(req, max_bytes)
    if not raw.strip():
        return {}
    if media and media != falcon.MEDIA_JSON and not media.endswith("+json"):
        kinds = ", ".join(["application/json", *BULK_MEDIA])
        raise UnsupportedMediaType(f"request body must be one of {kinds}; not {media}")
    try:
        body = loads_body(raw, lazy)
    except ValueError as exc:  # orjson.JSONDecodeError is one
        raise InvalidPayload(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidPayload("request body must be a JSON object of parameters")
    return body
