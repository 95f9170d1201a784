"""Registry: model name -> wrapper, for one app (never a global)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mlserver.errors import ConfigurationError, ModelNotFound
from mlserver.wrapper import ModelWrapper

__all__ = ["RESERVED_NAMES", "Registry"]

#: Routes the service itself answers; no model may take them.
RESERVED_NAMES = frozenset({"health", "ready", "models", "openapi.json", "metrics", "v2", "ui"})

# Unreserved URL characters only, so a name never needs escaping in a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


class Registry:
    """The wrappers one app serves, looked up by name."""

    def __init__(self, wrappers: Iterable[ModelWrapper | type[ModelWrapper]] = ()) -> None:
        self._wrappers: dict[str, ModelWrapper] = {}
        for wrapper in wrappers:
            self.register(wrapper)

    def register(self, wrapper: ModelWrapper | type[ModelWrapper]) -> ModelWrapper:
        """Add a wrapper (an instance, or a class with a no-argument constructor)."""
        if isinstance(wrapper, type) and issubclass(wrapper, ModelWrapper):
            wrapper = wrapper()
        if not isinstance(wrapper, ModelWrapper):
            raise ConfigurationError(f"{wrapper!r} is not a ModelWrapper")
        name = getattr(wrapper, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"{type(wrapper).__name__}.name must be a URL-safe string "
                f"(letters, digits, '.', '_', '~', '-'; at most 128), got {name!r}"
            )
        if name in RESERVED_NAMES:
            raise ConfigurationError(f"model name {name!r} is reserved for a service route")
        if name in self._wrappers:
            raise ConfigurationError(f"a model named {name!r} is already registered")
        wrapper.get_serializer()  # fail at start-up, not at the first fit
        self._wrappers[name] = wrapper
        return wrapper

    def get(self, name: str) -> ModelWrapper:
        """The wrapper registered as `name`; ModelNotFound names the known ones otherwise."""
        try:
            return self._wrappers[name]
        except KeyError:
            known = ", ".join(sorted(self._wrappers)) or "none"
            raise ModelNotFound(f"unknown model {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._wrappers)

    def __contains__(self, name: object) -> bool:
        return name in self._wrappers

    def __iter__(self) -> Iterator[ModelWrapper]:
        return iter(self._wrappers.values())

    def __len__(self) -> int:
        return len(self._wrappers)

    def __repr__(self) -> str:
        return f"Registry({self.names()!r})"
