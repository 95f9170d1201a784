"""Pluggable ways to turn a fitted model into bytes: pick one per wrapper.

The backends are imported on first use (PEP 562): importing this package costs only the
contract, and ONNX or skops load only for a server or script that names them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlserver.serializers.base import Serializer, resolve_serializer

if TYPE_CHECKING:
    from mlserver.serializers.joblib import JoblibSerializer
    from mlserver.serializers.onnx import OnnxSerializer
    from mlserver.serializers.skops import SkopsSerializer

__all__ = [
    "JoblibSerializer",
    "OnnxSerializer",
    "Serializer",
    "SkopsSerializer",
    "resolve_serializer",
]

_BACKENDS = {
    "JoblibSerializer": "mlserver.serializers.joblib",
    "OnnxSerializer": "mlserver.serializers.onnx",
    "SkopsSerializer": "mlserver.serializers.skops",
}


def __getattr__(name: str) -> Any:
    if name in _BACKENDS:
        value = getattr(importlib.import_module(_BACKENDS[name]), name)
        globals()[name] = value  # found once; later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
