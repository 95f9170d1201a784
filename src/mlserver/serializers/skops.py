"""skops serializer: loading never runs code from the artifact, only trusted types.

Which types are trusted is the server's configuration (this serializer's `trusted` list, on top
of the types skops itself trusts); nothing stored with the model can widen it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlserver.errors import UntrustedModel
from mlserver.serializers.base import Serializer

__all__ = ["SkopsSerializer"]


class SkopsSerializer(Serializer):
    """Stores models in skops' format; loads them only if every type in them is trusted."""

    name = "skops"
    skew_libraries = ("scikit-learn", "skops")

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        import skops.io  # noqa: F401 - fail at configuration time if the extra is missing

        self.trusted = tuple(sorted(set(trusted)))

    def dumps(self, model: Any, schema: Any = None) -> bytes:
        import skops.io

        return skops.io.dumps(model)

    def loads(self, data: bytes) -> Any:
        import skops.io

        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(self.trusted))
        if untrusted:
            raise UntrustedModel(
                "the stored model contains types this server does not trust: "
                + ", ".join(untrusted)
                + " (add them to SkopsSerializer(trusted=...) if you trust them)",
                untrusted,
            )
        return skops.io.loads(data, trusted=list(self.trusted) or None)

    def trusting(self, types: tuple[str, ...]) -> SkopsSerializer:
        if set(types) <= set(self.trusted):
            return self
        return SkopsSerializer((*self.trusted, *types))

    def library_versions(self) -> dict[str, str]:
        import skops

        return {"skops": skops.__version__}

    def __repr__(self) -> str:
        return f"SkopsSerializer(trusted={list(self.trusted)!r})"
