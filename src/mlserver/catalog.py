"""The built-in catalog: common scikit-learn estimators under stable route names.

`ml-server serve` without a TARGET serves `catalog()`: these, and `imported`, a route that
trains nothing and serves any model imported into it (`PUT /imported/import`).

Every entry is built with `wrap_estimator`, so a PUT can construct only the estimators listed
here, and only with their own constructor arguments of valid types (anything else is a 400
before training). The names are part of the HTTP contract: add entries, never rename or
remove one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sklearn.base import ClassifierMixin, ClusterMixin, RegressorMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlserver.registry import Registry
from mlserver.wrapper import ModelWrapper, wrap_estimator

__all__ = ["ENTRIES", "IMPORTED", "SERIALIZER", "CatalogEntry", "ImportedModels", "catalog"]

#: The route of models trained elsewhere.
IMPORTED = "imported"

#: Serializer of every entry that does not name its own.
SERIALIZER = "joblib"

#: The estimator method a PATCH calls, for entries that learn from new data.
PARTIAL_FIT = "partial_fit"


class CatalogEntry(NamedTuple):
    """One built-in model: its route, its estimator class, how PATCH updates it."""

    name: str
    estimator: type
    update: str | None = None
    serializer: str = SERIALIZER

    @property
    def supports_update(self) -> bool:
        """Whether the model accepts PATCH."""
        return self.update is not None

    @property
    def kind(self) -> str:
        """classifier, regressor or clusterer."""
        for mixin, kind in (
            (ClassifierMixin, "classifier"),
            (RegressorMixin, "regressor"),
            (ClusterMixin, "clusterer"),
        ):
            if issubclass(self.estimator, mixin):
                return kind
        return "estimator"

    @property
    def import_path(self) -> str:
        """Where users import the estimator from, e.g. sklearn.linear_model.Ridge."""
        package = self.estimator.__module__.split("._")[0]
        return f"{package}.{self.estimator.__qualname__}"

    def wrapper(self) -> ModelWrapper:
        """A fresh wrapper for this entry."""
        return wrap_estimator(
            self.estimator, self.name, serializer=self.serializer, update=self.update
        )


#: Every built-in model, in the order `ml-server catalog` lists them.
ENTRIES: tuple[CatalogEntry, ...] = (
    # regression
    CatalogEntry("linear-regression", LinearRegression),
    CatalogEntry("ridge", Ridge),
    CatalogEntry("lasso", Lasso),
    CatalogEntry("elastic-net", ElasticNet),
    CatalogEntry("sgd-regressor", SGDRegressor, update=PARTIAL_FIT),
    CatalogEntry("decision-tree-regressor", DecisionTreeRegressor),
    CatalogEntry("random-forest-regressor", RandomForestRegressor),
    CatalogEntry("gradient-boosting-regressor", GradientBoostingRegressor),
    CatalogEntry("hist-gradient-boosting-regressor", HistGradientBoostingRegressor),
    CatalogEntry("k-neighbors-regressor", KNeighborsRegressor),
    CatalogEntry("svr", SVR),
    CatalogEntry("mlp-regressor", MLPRegressor, update=PARTIAL_FIT),
    # classification
    CatalogEntry("logistic-regression", LogisticRegression),
    CatalogEntry("sgd-classifier", SGDClassifier, update=PARTIAL_FIT),
    CatalogEntry("gaussian-nb", GaussianNB, update=PARTIAL_FIT),
    CatalogEntry("decision-tree-classifier", DecisionTreeClassifier),
    CatalogEntry("random-forest-classifier", RandomForestClassifier),
    CatalogEntry("gradient-boosting-classifier", GradientBoostingClassifier),
    CatalogEntry("hist-gradient-boosting-classifier", HistGradientBoostingClassifier),
    CatalogEntry("k-neighbors-classifier", KNeighborsClassifier),
    CatalogEntry("svc", SVC),
    CatalogEntry("mlp-classifier", MLPClassifier, update=PARTIAL_FIT),
    # clustering
    CatalogEntry("k-means", KMeans),
    CatalogEntry("mini-batch-k-means", MiniBatchKMeans, update=PARTIAL_FIT),
)


class ImportedModels(ModelWrapper):
    """Any scikit-learn estimator or ONNX graph trained elsewhere, imported as it is."""

    name = IMPORTED
    fits = False

    def make_model(self, **modkwargs: Any) -> Any:
        raise TypeError(f"{IMPORTED!r} trains nothing: import a fitted model into it")


def catalog() -> Registry:
    """A fresh Registry of every built-in model and the `imported` route (a new one per
    call: apps never share it)."""
    return Registry([*(entry.wrapper() for entry in ENTRIES), ImportedModels()])
