"""mlserver: serve and train scikit-learn-style models over REST."""

from mlserver.http.app import create_app
from mlserver.registry import Registry
from mlserver.wrapper import ModelWrapper, wrap_estimator

__all__ = ["ModelWrapper", "Registry", "create_app", "wrap_estimator"]
