"""Keys: the key of a PUT's data and kwargs, and the key a name stands for."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
import pandas as pd

from mlserver.frames.labels import label_text

__all__ = ["artifact_key", "name_key", "training_key"]


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
            [[type(c).__name__, label_text(c), str(t)] for c, t in frame.dtypes.items()],
            [[type(n).__name__, None if n is None else label_text(n)] for n in frame.index.names],
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


def artifact_key(sha256: str) -> str:
    """The key an imported artifact gets without a name: from its sha256 (hex), never equal
    to a data key or a name's key."""
    return hashlib.sha256(b"mlserver-artifact-v1\0" + sha256.encode()).hexdigest()[:32]
