"""Pluggable ways to turn a fitted model into bytes: pick one per wrapper."""

from mlserver.serializers.base import Serializer, resolve_serializer
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
