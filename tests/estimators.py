"""Every estimator `sklearn.utils.all_estimators()` lists, built and given data it can learn.

Estimators that build with default arguments are built that way; meta-estimators get a simple
base (LogisticRegression for classifiers, Ridge for regressors). The data follows each
estimator's tags: positive features where it wants them, integer categories for CategoricalNB,
a two-column target for estimators that only take several outputs. What cannot take a frame
at all (text and dict vectorizers, label encoders) still gets a frame: the server only ever
gives a model a frame, so the sweep checks what a user would see, a clear refusal.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import all_estimators

__all__ = ["Case", "cases"]

ROWS = 48
COLUMNS = ["f0", "f1", "f2", "f3"]
CLASSES = np.array(["ant", "bee", "cat"])


@dataclass(frozen=True)
class Case:
    """One estimator to fit: how to build it and what to fit it on."""

    name: str
    make: Callable[[], Any]
    x: pd.DataFrame
    y: pd.Series | pd.DataFrame | None

    @property
    def route(self) -> str:
        return self.name.lower()


def _classifier() -> LogisticRegression:
    return LogisticRegression()


# Meta-estimators: what their required arguments are, for a simple base.
_META: dict[str, Callable[[], dict[str, Any]]] = {
    "ClassifierChain": lambda: {"estimator": _classifier()},
    "ColumnTransformer": lambda: {
        "transformers": [("scale", StandardScaler(), ["f0", "f1"]), ("pca", PCA(1), ["f2", "f3"])]
    },
    "FeatureUnion": lambda: {"transformer_list": [("scale", StandardScaler()), ("pca", PCA(2))]},
    "FixedThresholdClassifier": lambda: {"estimator": _classifier()},
    "FrozenEstimator": None,  # wraps an already fitted estimator: built in `_frozen`
    "GridSearchCV": lambda: {"estimator": Ridge(), "param_grid": {"alpha": [0.1, 1.0]}, "cv": 3},
    "MultiOutputClassifier": lambda: {"estimator": _classifier()},
    "MultiOutputRegressor": lambda: {"estimator": Ridge()},
    "OneVsOneClassifier": lambda: {"estimator": _classifier()},
    "OneVsRestClassifier": lambda: {"estimator": _classifier()},
    "OutputCodeClassifier": lambda: {"estimator": _classifier(), "random_state": 0},
    "Pipeline": lambda: {"steps": [("scale", StandardScaler()), ("model", Ridge())]},
    "RFE": lambda: {"estimator": _classifier()},
    "RFECV": lambda: {"estimator": _classifier(), "cv": 3},
    "RandomizedSearchCV": lambda: {
        "estimator": Ridge(),
        "param_distributions": {"alpha": [0.1, 1.0]},
        "n_iter": 2,
        "cv": 3,
        "random_state": 0,
    },
    "RegressorChain": lambda: {"estimator": Ridge()},
    "SelectFromModel": lambda: {"estimator": _classifier()},
    "SelfTrainingClassifier": lambda: {"estimator": _classifier()},  # its default has no tags
    "SequentialFeatureSelector": lambda: {"estimator": _classifier(), "cv": 3},
    "SparseCoder": lambda: {"dictionary": np.random.default_rng(0).normal(size=(3, 4))},
    "StackingClassifier": lambda: {
        "estimators": [("lr", _classifier()), ("tree", DecisionTreeClassifier(random_state=0))],
        "cv": 3,
    },
    "StackingRegressor": lambda: {
        "estimators": [("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))],
        "cv": 3,
    },
    "TunedThresholdClassifierCV": lambda: {"estimator": _classifier(), "cv": 3},
    "VotingClassifier": lambda: {
        "estimators": [("lr", _classifier()), ("tree", DecisionTreeClassifier(random_state=0))]
    },
    "VotingRegressor": lambda: {
        "estimators": [("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))]
    },
}

# Classifiers whose meta-estimator needs a binary target or several outputs.
_BINARY = {"FixedThresholdClassifier", "TunedThresholdClassifierCV"}
_MULTI_OUTPUT = {"ClassifierChain", "MultiOutputClassifier", "RegressorChain"}
# Cross-decompositions with two components need two targets.
_TWO_TARGETS = {"CCA", "PLSCanonical", "PLSSVD"}


def _tags(estimator: Any) -> Any:
    try:
        return estimator.__sklearn_tags__()
    except AttributeError:
        return None


def _features(rng: np.random.Generator, tags: Any, name: str) -> pd.DataFrame:
    values = rng.normal(size=(ROWS, len(COLUMNS)))
    if name == "CategoricalNB":
        values = rng.integers(0, 4, size=(ROWS, len(COLUMNS))).astype(np.float64)
    elif tags is not None and tags.input_tags.positive_only:
        values = np.abs(values)
    frame = pd.DataFrame(values, columns=COLUMNS)
    if name == "IsotonicRegression":  # one feature only
        frame = frame[["f0"]]
    return frame


def _target(rng: np.random.Generator, estimator: Any, name: str, x: pd.DataFrame) -> Any:
    """Class labels for classifiers and for transformers that select or project with them,
    a number for regressors; none for clusterers and outlier detectors."""
    tags = _tags(estimator)
    kind = None if tags is None else tags.estimator_type
    if kind in ("clusterer", "outlier_detector"):
        return None
    signal = x.to_numpy() @ np.arange(1, x.shape[1] + 1) / x.shape[1]
    if kind != "regressor" and name not in _TWO_TARGETS:
        if name in _BINARY:
            labels = CLASSES[(signal > np.median(signal)).astype(int)]
        else:
            labels = CLASSES[np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))]
        if name in _MULTI_OUTPUT:
            codes = np.searchsorted(CLASSES, labels)  # chains take numeric labels only
            return pd.DataFrame({"first": codes, "second": codes[::-1]})
        return pd.Series(labels, name="label")
    y = signal + rng.normal(scale=0.1, size=len(signal))
    if tags is not None and tags.target_tags.positive_only:
        y = np.abs(y) + 0.5
    multi_only = tags is not None and not tags.target_tags.single_output
    if multi_only or name in _MULTI_OUTPUT | _TWO_TARGETS:
        return pd.DataFrame({"first": y, "second": y[::-1]})
    return pd.Series(y, name="target")


def _required(cls: type) -> list[str]:
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def _frozen() -> Any:
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(ROWS, len(COLUMNS))), columns=COLUMNS)
    return FrozenEstimator(Ridge().fit(x, x["f0"] * 2))


def cases() -> list[Case]:
    """One Case per estimator of `all_estimators()`, in their order."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated estimators warn when built
        for name, cls in all_estimators():
            found.append(_case(name, cls, np.random.default_rng(len(found))))
    return found


def _case(name: str, cls: type, rng: np.random.Generator) -> Case:
    if name == "FrozenEstimator":
        make: Callable[[], Any] = _frozen
    elif _required(cls) or name in _META:
        make = _bound(cls, _META[name])
    else:
        make = cls
    sample = make()
    x = _features(rng, _tags(sample), name)
    return Case(name, make, x, _target(rng, sample, name, x))


def _bound(cls: type, arguments: Callable[[], dict[str, Any]]) -> Callable[[], Any]:
    return lambda: cls(**arguments())
