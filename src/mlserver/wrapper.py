"""What a user writes per model: how to build, fit, predict and (optionally) update it."""

from __future__ import annotations

import importlib
import inspect
import sys
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from mlserver.serializers.base import Serializer, resolve_serializer

__all__ = ["ModelWrapper", "wrap_estimator"]


class ModelWrapper(ABC):
    """One servable model. Subclass it, set `name`, implement `make_model`; the rest defaults
    to scikit-learn conventions::

        class Iris(ModelWrapper):
            name = "iris"
            def make_model(self, **modkwargs):
                return LogisticRegression(**modkwargs)

    Wrappers know nothing of HTTP or storage. `fit` and `update` run on the training executor
    on a model of their own, never one that is serving; `predict` runs on request threads,
    several at once on the same cached model, so it must not change the model.
    """

    #: The route (`/{name}`): URL-safe, unique within a registry.
    name: ClassVar[str]
    #: How fitted models become bytes: an alias ("joblib", "onnx", "skops") or a Serializer.
    serializer: ClassVar[str | Serializer] = "joblib"
    #: Whether PUT trains new versions; a route that serves imported models only says False.
    fits: ClassVar[bool] = True
    #: Whether concurrent predicts may be stacked into one call of `apply` (adaptive
    #: batching): say False if `predict` needs each request's rows on their own.
    batchable: ClassVar[bool] = True
    #: Prediction methods a client may ask for (POST `method`), where the fitted model has them.
    methods: ClassVar[tuple[str, ...]] = (
        "predict",
        "predict_proba",
        "decision_function",
        "transform",
    )

    @abstractmethod
    def make_model(self, **modkwargs: Any) -> Any:
        """A fresh, unfitted model; errors here reach the client as a 400 before any training."""

    def fit(self, model: Any, x: Any, y: Any = None, **algkwargs: Any) -> Any:
        """Fit `model` and return the fitted model (`model.fit(x, y, **algkwargs)`)."""
        fitted = model.fit(x, y, **algkwargs)
        return model if fitted is None else fitted

    def predict(self, model: Any, x: Any) -> Any:
        """Predictions for the rows of `x`: one value per row."""
        return model.predict(x)

    def apply(self, model: Any, x: Any, method: str = "predict") -> Any:
        """Run a prediction method: `predict` goes through `self.predict`, others are called on
        the model (`model.predict_proba(x)`). Override to change what a method computes."""
        if method == "predict":
            return self.predict(model, x)
        return getattr(model, method)(x)

    def update(self, model: Any, x: Any, y: Any = None) -> Any:
        """Return `model` updated with new data. Override it to accept PATCH."""
        raise NotImplementedError(f"{type(self).__name__} does not implement update")

    def cannot_update(self, **modkwargs: Any) -> str | None:
        """Why models made with these `modkwargs` cannot be updated, or None if they can.

        Asked before a PATCH starts a job, so a key that can never be updated (e.g. an
        MLPClassifier with solver="lbfgs" has no `partial_fit`) is a 422 at once rather
        than a FAILED version later.
        """
        return None

    def metadata(self, model: Any, x: Any, y: Any = None) -> dict[str, Any]:
        """Extra JSON-serializable facts stored with each fitted version."""
        return {}

    @property
    def supports_update(self) -> bool:
        """Whether this wrapper overrides `update` (only then does the model accept PATCH)."""
        return type(self).update is not ModelWrapper.update

    def get_serializer(self) -> Serializer:
        """The serializer instance this wrapper's `serializer` attribute names."""
        return resolve_serializer(self.serializer)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r}>"


def wrap_estimator(
    estimator: type | str,
    name: str,
    *,
    serializer: str | Serializer = "joblib",
    update: str | None = None,
) -> ModelWrapper:
    """A wrapper for a scikit-learn-style estimator class, without writing a subclass.

    `update` names the estimator method that learns from new data (e.g. "partial_fit");
    with it the model accepts PATCH. Unknown or ill-typed constructor arguments are caught
    in `make_model`, so they reach the client as a 400 instead of a failed job.

    `estimator` may be the class's import path ("sklearn.ensemble.RandomForestClassifier"):
    its module is then imported when the first model is made, not now (the catalog's way to
    start without importing every estimator it offers).
    """
    if isinstance(estimator, str):
        path, class_name = estimator, estimator.rpartition(".")[2]
    else:
        path, class_name = _public_path(estimator), estimator.__name__
        if update is not None and not callable(getattr(estimator, update, None)):
            raise TypeError(f"{estimator.__name__} has no method {update!r}")
    namespace: dict[str, Any] = {
        "name": name,
        "serializer": serializer,
        "make_model": _make_estimator(estimator),
        "__doc__": f"{path} served as {name!r}.",
    }
    if update is not None:
        namespace["update"] = _updater(update)
        namespace["cannot_update"] = _update_check(update)
    # NOTE: the class is made here, so pickle cannot find it by name; rebuilding it from the
    # same arguments lets process pools and clusters receive these wrappers.
    arguments = (estimator, name)
    options = {"serializer": serializer, "update": update}
    namespace["__reduce__"] = lambda self: (_rebuild, (arguments, options))
    cls = type(f"{class_name}Wrapper", (ModelWrapper,), namespace)
    return cls()


def _rebuild(arguments: tuple[type | str, str], options: dict[str, Any]) -> ModelWrapper:
    return wrap_estimator(*arguments, **options)


def _resolved(estimator: type | str) -> type:
    """The class, imported from its path on first use (then found in sys.modules)."""
    if not isinstance(estimator, str):
        return estimator
    module, _, name = estimator.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _public_path(cls: type) -> str:
    """`sklearn.linear_model.Ridge` rather than the private `sklearn.linear_model._ridge`."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:end]))
        if getattr(module, cls.__qualname__, None) is cls:
            return f"{'.'.join(parts[:end])}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _make_estimator(named: type | str):
    def make_model(self: ModelWrapper, **modkwargs: Any) -> Any:
        estimator = _resolved(named)
        parameters = inspect.signature(estimator).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        unknown = sorted(set(modkwargs) - set(parameters))
        if unknown and not takes_any:
            raise TypeError(f"{estimator.__name__} got unknown parameter(s): {', '.join(unknown)}")
        model = estimator(**modkwargs)
        # NOTE: scikit-learn checks parameter types only in fit; do it now so a bad type is a
        # 400 at PUT instead of a FAILED version later.
        # Classes without `_parameter_constraints` (LabelEncoder, KernelCenterer) take no
        # parameters to check.
        validate = getattr(model, "_validate_params", None)
        if callable(validate) and hasattr(model, "_parameter_constraints"):
            validate()
        return model

    return make_model


def _update_check(method: str):
    def cannot_update(self: ModelWrapper, **modkwargs: Any) -> str | None:
        # NOTE: scikit-learn hides methods the parameters rule out (`available_if`): an
        # unfitted model made with the same parameters tells, without loading the fitted one.
        try:
            model = self.make_model(**modkwargs)
        except Exception:  # accepted at PUT; if not now, the job will say why
            return None
        try:
            getattr(model, method)
        except AttributeError as exc:
            reason = exc.__cause__ if isinstance(exc.__cause__, AttributeError) else exc
            return f"{type(model).__name__} with these modkwargs has no {method}: {reason}"
        except Exception:  # an availability check of its own failing: the job will tell
            return None
        return None

    return cannot_update


def _updater(method: str):
    def update(self: ModelWrapper, model: Any, x: Any, y: Any = None) -> Any:
        updated = getattr(model, method)(x, y)
        return model if updated is None else updated

    return update
