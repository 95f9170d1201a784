"""Pluggable ways to turn a fitted model into bytes: pick one per wrapper."""

from mlserver.serializers.base import Serializer, resolve_serializer
from mlserver.serializers.joblib import JoblibSerializer

__all__ = ["JoblibSerializer", "Serializer", "resolve_serializer"]
