"""mlserver: serve and train scikit-learn-style models over REST.

The names below are imported on first use (PEP 562), so `import mlserver.client` or
`import mlserver.serializers` does not pay for falcon, peewee, prometheus or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlserver.http.app import create_app
    from mlserver.registry import Registry
    from mlserver.wrapper import ModelWrapper, wrap_estimator

__all__ = ["ModelWrapper", "Registry", "create_app", "wrap_estimator"]

_HOMES = {
    "ModelWrapper": "mlserver.wrapper",
    "Registry": "mlserver.registry",
    "create_app": "mlserver.http.app",
    "wrap_estimator": "mlserver.wrapper",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # found once; later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
