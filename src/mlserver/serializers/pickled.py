"""pickle serializer: for models imported as plain pickle files (MLflow's `model.pkl`,
BentoML's `saved_model.pkl`), stored as they came so an export gives back the same bytes.

Loading a pickle runs code: a server takes one over HTTP only with `allow_pickle_import`,
and loads only blobs it stored, each checked against its sha256 (and signature) first.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import joblib

from mlserver.serializers.base import Serializer

__all__ = ["PickleSerializer"]


class PickleSerializer(Serializer):
    """The standard library's pickle, highest protocol; loads with joblib, which reads plain
    pickles and its own (a `.pkl` file is often joblib's, e.g. BentoML's)."""

    name = "pickle"

    def dumps(self, model: Any, schema: Any = None) -> bytes:
        return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        # NOTE: only bytes this server stored, checked against their sha256 and signature.
        return joblib.load(io.BytesIO(data))
