"""The serializer interface and the resolver that accepts a short name or an instance."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

from mlserver.errors import ConfigurationError

__all__ = ["Serializer", "has_method", "resolve_serializer"]


class Serializer(ABC):
    """Turns a fitted model into bytes for the store and back.

    Implementations are stateless apart from their options, so one instance can serve every
    thread. `schema` is the training schema (`mlserver.frames.Schema`); backends that compile
    the model for a fixed input layout need it, the others ignore it.
    """

    #: Short name stored with every version, used to find the serializer again on load.
    name: str
    #: Libraries whose major.minor must match between training and serving for a safe load.
    skew_libraries: tuple[str, ...] = ("scikit-learn",)
    #: The same for what `loads_for_update` reads, where that differs (None: the same).
    update_skew_libraries: tuple[str, ...] | None = None

    @abstractmethod
    def dumps(self, model: Any, schema: Any = None) -> bytes:
        """Bytes that `loads` turns back into an equivalent fitted model."""

    @abstractmethod
    def loads(self, data: bytes) -> Any:
        """The fitted model `dumps` wrote."""

    def verify(self, model: Any, blob: bytes, sample: Any) -> None:  # noqa: B027 - optional hook
        """Raise if `blob` would not answer as `model` does on `sample` (training rows).

        Called after `dumps` before a version is stored. Backends that store the model
        itself have nothing to check; those that compile it (ONNX) compare answers.
        """

    def loads_for_update(self, data: bytes) -> Any:
        """The model an update starts from; backends that serve a compiled form override it."""
        return self.loads(data)

    @property
    def can_update(self) -> bool:
        """Whether `loads_for_update` can give back a model that learns further."""
        return True

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries the bytes depend on, recorded with each version."""
        return {}

    def trusting(self, types: tuple[str, ...]) -> Serializer:
        """This serializer, also trusting `types` where it loads only trusted types (skops);
        the server's `trusted_types` setting reaches it this way."""
        return self

    def updatable(self, data: bytes) -> bool:
        """Whether `loads_for_update` can give a model that learns further from these bytes
        (an ONNX graph imported from elsewhere keeps no native model)."""
        return self.can_update

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# Short aliases -> "module:Class", imported on first use so optional backends cost nothing.
_ALIASES = {
    "joblib": "mlserver.serializers.joblib:JoblibSerializer",
    "onnx": "mlserver.serializers.onnx:OnnxSerializer",
    "pickle": "mlserver.serializers.pickled:PickleSerializer",
    "skops": "mlserver.serializers.skops:SkopsSerializer",
}


def resolve_serializer(spec: str | Serializer | type[Serializer]) -> Serializer:
    """A serializer instance from an alias ("joblib"), a Serializer class or an instance."""
    if isinstance(spec, Serializer):
        return spec
    if isinstance(spec, type) and issubclass(spec, Serializer):
        return spec()
    if isinstance(spec, str) and spec in _ALIASES:
        module_name, _, class_name = _ALIASES[spec].partition(":")
        return getattr(importlib.import_module(module_name), class_name)()
    known = ", ".join(sorted(_ALIASES))
    raise ConfigurationError(f"unknown serializer {spec!r}; known: {known}")


def has_method(model: Any, method: str) -> bool:
    """Whether a fitted model has `method`: scikit-learn hides those its parameters rule out
    (`available_if`), and an availability check that raises anything counts as absent."""
    try:
        return callable(getattr(model, method, None))
    except Exception:
        return False
