"""JSON text as the decoders read it: orjson's values, refusing integers beyond 64 bits, and
simdjson's lazy document for large bodies.

`LazyJSON` lives here, not in `http/`, though HTTP bodies are what make most of them: the
decoders (`frames.orients`, `frames.fast`) take it as one more form of `x`, and a large `x`
sent as pandas-JSON text becomes one inside `frames` too; `frames` never imports `http`.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
import simdjson

from mlserver.errors import InvalidPayload
from mlserver.frames.labels import INT64_MIN, UINT64_MAX

__all__ = [
    "CONTAINERS",
    "LAZY_BODY_BYTES",
    "LazyJSON",
    "distinct_keys",
    "lazy_document",
    "loads",
    "parse",
    "plain",
]

#: Bodies (and pandas-JSON texts) at least this large are parsed lazily.
LAZY_BODY_BYTES = 64 * 1024

#: simdjson's containers: what stays lazy until the training schema is known.
CONTAINERS = (simdjson.Object, simdjson.Array)


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


def lazy_document(raw: bytes) -> Any:
    """simdjson's lazy document, or None where orjson is the one to read `raw` (invalid
    JSON, a byte-order mark, integers above 64 bits, deep nesting: orjson words the error
    or reads it the way it always has)."""
    if raw.startswith(codecs.BOM_UTF8):
        return None
    try:
        return simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # simdjson reports some failures as RuntimeError
        return None


def distinct_keys(document: Any) -> list[str] | None:
    """An object's keys, or None if one repeats (simdjson would take the first value,
    orjson takes the last)."""
    keys = list(document.keys())
    return keys if len(set(keys)) == len(keys) else None


def plain(value: Any) -> Any:
    """A lazily parsed JSON value as Python objects (anything else as it is)."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


#: A run of 19 digits: the shortest text of an integer that may not fit in 64 bits (also
#: the digits of many a float's fraction, 0.0067527373888681685: see `loads`).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


class _BigInteger(ValueError):
    pass


def _int64(text: str) -> int:
    number = int(text)
    if not INT64_MIN <= number <= UINT64_MAX:
        raise _BigInteger(text)
    return number


def loads(raw: bytes | str, what: str, parameter: str | None = None) -> Any:
    """JSON text as orjson reads it, refusing integers beyond 64 bits, which orjson (like
    numpy and pandas) would turn into floats silently: a label 2**70 would become another
    number. Raises orjson.JSONDecodeError (a ValueError) for text that is not JSON."""
    value = orjson.loads(raw)
    text = raw.encode() if isinstance(raw, str) else raw
    # PERF: long digit runs are common in fractions; simdjson (~1 GB/s) reads the text
    # unless it holds such an integer, and only then does the slow exact check run.
    if _LONG_DIGITS.search(text) and lazy_document(text) is None:
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


def parse(value: Any, parameter: str) -> tuple[Any, bool]:
    """The JSON value of a parameter and whether it came as pandas-JSON text."""
    if isinstance(value, LazyJSON):
        return value.python(), False
    if isinstance(value, str | bytes):
        try:
            return loads(value, parameter, parameter), True
        except orjson.JSONDecodeError as exc:
            raise InvalidPayload(f"{parameter}: not valid JSON text ({exc})", parameter) from None
    return value, False
