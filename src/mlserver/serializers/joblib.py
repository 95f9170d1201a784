"""joblib (pickle) serializer: handles any Python estimator, so it is the default.

Loading a pickle runs code: only blobs this server wrote are ever loaded, and each is
checked against its stored sha256 first.
"""

from __future__ import annotations

import io
from typing import Any

import joblib

from mlserver.serializers.base import Serializer

__all__ = ["JoblibSerializer"]


class JoblibSerializer(Serializer):
    """Pickles with joblib, which stores numpy arrays efficiently."""

    name = "joblib"

    def __init__(self, compress: int = 0) -> None:
        # PERF: uncompressed by default: loading is on the predict path after a cache miss.
        self.compress = compress

    def dumps(self, model: Any, schema: Any = None) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=self.compress)
        return buffer.getvalue()

    def loads(self, data: bytes) -> Any:
        return joblib.load(io.BytesIO(data))

    def library_versions(self) -> dict[str, str]:
        return {"joblib": joblib.__version__}

    def __repr__(self) -> str:
        return f"JoblibSerializer(compress={self.compress})"
