"""mlserver: serve and train scikit-learn-style models over REST.

The names below are imported on first use (PEP 562), so `import mlserver.client` or
`import mlserver.serializers` does not pay for falcon, peewee, prometheus or scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlserver.lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _HOMES)
