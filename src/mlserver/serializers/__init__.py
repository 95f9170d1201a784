"""Pluggable ways to turn a fitted model into bytes: pick one per wrapper.

The backends are imported on first use (PEP 562): importing this package costs only the
contract, and ONNX or skops load only for a server or script that names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlserver.lazy import lazy_names
from mlserver.serializers.base import Serializer, resolve_serializer

if TYPE_CHECKING:
    from mlserver.serializers.joblib import JoblibSerializer
    from mlserver.serializers.onnx import OnnxSerializer
    from mlserver.serializers.pickled import PickleSerializer
    from mlserver.serializers.skops import SkopsSerializer

__all__ = [
    "JoblibSerializer",
    "OnnxSerializer",
    "PickleSerializer",
    "Serializer",
    "SkopsSerializer",
    "resolve_serializer",
]

_BACKENDS = {
    "JoblibSerializer": "mlserver.serializers.joblib",
    "OnnxSerializer": "mlserver.serializers.onnx",
    "PickleSerializer": "mlserver.serializers.pickled",
    "SkopsSerializer": "mlserver.serializers.skops",
}


__getattr__, __dir__ = lazy_names(__name__, _BACKENDS)
