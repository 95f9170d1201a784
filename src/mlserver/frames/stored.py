"""Training data as the store keeps it: `x` and `y` of a fit or update, encoded once, given
back exactly, and named by their content.

PROVISIONAL: a first cut; the exact round trip and its refusals are to be completed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlserver.errors import NotStorable

__all__ = ["FORMAT", "Encoded", "arrow_answer", "content_digest", "decode", "encode", "json_answer"]

#: The name of the encoding, stored beside each dataset.
FORMAT = "arrow-ipc-zstd-1"


@dataclass(frozen=True)
class Encoded:
    blob: bytes
    rows: int
    columns: int
    #: Bytes of x and y in memory (pandas' deep memory usage).
    raw_bytes: int


def content_digest(x: pd.DataFrame, y: pd.Series | pd.DataFrame | None) -> str:
    """sha256 (64 hex digits) that is equal exactly when x and y are equal, labels and
    dtypes included."""
    import pickle

    return hashlib.sha256(pickle.dumps((x, y))).hexdigest()


def encode(x: pd.DataFrame, y: pd.Series | pd.DataFrame | None) -> Encoded:
    """x and y as one blob that `decode` gives back exactly; NotStorable otherwise."""
    import pickle

    blob = pickle.dumps((x, y))
    raw = int(x.memory_usage(deep=True).sum())
    raw += 0 if y is None else int(np.sum(y.memory_usage(deep=True)))
    if not len(x):
        raise NotStorable("no rows")
    return Encoded(blob, len(x), x.shape[1], raw)


def decode(blob: bytes) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame | None]:
    import pickle

    return pickle.loads(blob)


def json_answer(x: pd.DataFrame, y: pd.Series | pd.DataFrame | None) -> dict:
    """The JSON answer of `GET .../data`: {"x": split, "y": split | None}."""
    import orjson

    return {
        "x": orjson.loads(x.to_json(orient="split")),
        "y": None if y is None else orjson.loads(y.to_json(orient="split")),
        "orient": "split",
    }


def arrow_answer(x: pd.DataFrame, y: pd.Series | pd.DataFrame | None) -> bytes:
    """One Arrow stream of x's columns then y's, the target columns named in the schema
    metadata (b"mlserver.targets", a JSON list), as a fit body takes them back."""
    raise NotImplementedError
