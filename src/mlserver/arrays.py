"""Which fitted models can take a request's rows as one float64 array, skipping pandas.

The service conforms every `x` to the training schema (names, order, dtypes) before a model
sees it. For an all-numeric schema that leaves nothing for a scikit-learn estimator's own
DataFrame checks to find, yet on one row those checks cost ~0.8 ms of a ~1 ms predict, where
the same predict on an array costs ~0.2 ms. So a model that provably does with a DataFrame
only what it would do with the array gets the array.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["array_model"]

# Estimators that select or hand on columns by name: they must see the DataFrame.
_NAME_AWARE = (
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
)


def array_model(model: Any, columns: Sequence[Any]) -> Any | None:
    """A form of `model` whose methods take the conformed rows as a float64 array, or None.

    - A model that says so itself (`takes_arrays`, as the ONNX adapter does) is its own form.
    - A scikit-learn estimator fitted on exactly `columns` qualifies when neither it nor any
      estimator it holds is name-aware, or was fitted on names: such an estimator turns a
      DataFrame into this very array before using it. Its form is a shallow copy without
      `feature_names_in_` (the check the service already made), so the array draws no
      "fitted with feature names" warning; the model itself is left as it was.
    """
    if getattr(model, "takes_arrays", False):
        return model
    if not _plain_sklearn(model) or getattr(model, "n_features_in_", None) != len(columns):
        return None
    if any(_fitted_on_names(held) for held in _held(vars(model).values())):
        return None
    names = getattr(model, "feature_names_in_", None)
    if names is None:  # fitted on non-string labels: scikit-learn already ignores them
        return _ColumnMajor(model)
    if [str(name) for name in names] != [str(column) for column in columns]:
        return None
    if "feature_names_in_" not in vars(model):  # a property of its own: leave it be
        return None
    form = copy.copy(model)
    del form.feature_names_in_
    return _ColumnMajor(form)


#: Methods whose output is an array whatever the estimator's output configuration.
_ARRAY_METHODS = frozenset({"predict", "predict_proba", "predict_log_proba", "decision_function"})


class _ColumnMajor:
    """An estimator's methods, called with the rows laid out as a DataFrame's values are.

    NOTE: `np.asarray(frame)` is column-major, and BLAS rounds differently by layout: with
    the same layout the answers equal scikit-learn's on the DataFrame bit for bit.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def __getattr__(self, name: str) -> Any:
        # NOTE: not `transform`: its output follows set_output, which can name columns after
        # the feature names this form does not have.
        if name not in _ARRAY_METHODS:
            raise AttributeError(name)
        method = getattr(self.estimator, name)
        return lambda rows: method(np.asfortranarray(rows))


def _plain_sklearn(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    if not isinstance(model, BaseEstimator):
        return False
    kinds = {f"{k.__module__}.{k.__qualname__}" for k in type(model).__mro__}
    return type(model).__module__.startswith("sklearn.") and not kinds & set(_NAME_AWARE)


def _held(values: Any, depth: int = 4) -> list[Any]:
    """Objects held in attribute values, looking into lists, tuples, dicts and the
    attributes of held objects (CalibratedClassifierCV keeps its fitted estimators inside
    plain objects)."""
    found = []
    for value in values:
        if isinstance(value, np.ndarray | str | bytes | int | float | type) or value is None:
            continue
        if isinstance(value, list | tuple):
            if depth:
                found.extend(_held(value, depth - 1))
        elif isinstance(value, dict):
            if depth:
                found.extend(_held(value.values(), depth - 1))
        else:
            found.append(value)
            if depth and hasattr(value, "__dict__"):
                found.extend(_held(vars(value).values(), depth - 1))
    return found


def _fitted_on_names(value: Any) -> bool:
    """A held object that saw a DataFrame's names, or an estimator that is name-aware or
    not scikit-learn's own."""
    if getattr(value, "feature_names_in_", None) is not None:
        return True
    return hasattr(value, "fit") and hasattr(value, "get_params") and not _plain_sklearn(value)
