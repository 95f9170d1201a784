"""Column and row labels as `pandas.read_json` types them, and how messages name them."""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlserver.errors import InvalidPayload

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "axis",
    "default_index",
    "is_range",
    "label",
    "label_text",
    "names",
]

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def label(value: Any) -> Any:
    """A label as `read_json` reads it: a string that spells an int64 becomes that int."""
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return number
    return value


def axis(labels: Sequence[Any], parameter: str) -> pd.Index:
    """Labels as `read_json` would type them: integer-like strings become integers."""
    if not all(isinstance(value, str | int | float) for value in labels):
        raise InvalidPayload(f"{parameter}: labels must be strings or numbers", parameter)
    converted = [label(value) for value in labels]
    if converted and all(
        type(value) is int and INT64_MIN <= value <= INT64_MAX for value in converted
    ):
        # PERF: from an int64 array, 4x cheaper than letting pandas infer from the list.
        return pd.Index(np.fromiter(converted, dtype=np.int64, count=len(converted)))
    return pd.Index(labels)


def label_text(value: Any) -> str:
    """A label as a JSON object key."""
    return value if isinstance(value, str) else str(value)


def names(labels: Sequence[Hashable]) -> str:
    """Labels as an error message lists them."""
    return ", ".join(repr(value) for value in labels)


def default_index(index: pd.Index) -> bool:
    """The index pandas gives a frame by default: 0..n-1, unnamed."""
    return (
        isinstance(index, pd.RangeIndex)
        and (index.start, index.step) == (0, 1)
        and index.name is None
    )


def is_range(labels: list[Any]) -> bool:
    """Labels 0..n-1, all ints (0.0 and True compare equal to 0 and 1, but are not)."""
    return labels == list(range(len(labels))) and set(map(type, labels)) <= {int}
