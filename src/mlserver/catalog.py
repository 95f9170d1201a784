"""The built-in catalog: common scikit-learn estimators under stable route names.

`ml-server serve` without a TARGET serves `catalog()`: these, and `imported`, a route that
trains nothing and serves any model imported into it (`PUT /imported/import`).

Every entry is built with `wrap_estimator`, so a PUT can construct only the estimators listed
here, and only with their own constructor arguments of valid types (anything else is a 400
before training). The names are part of the HTTP contract: add entries, never rename or
remove one.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

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
    """One built-in model: its route, where its estimator class is imported from, its kind,
    how PATCH updates it.

    PERF: the class is named, not imported: serving the catalog imports an estimator's
    module when a model of it is first made or loaded (ensemble, neighbors, svm, ... cost
    ~0.1 s together at start-up otherwise).
    """

    name: str
    #: Where users import the estimator from, e.g. "sklearn.linear_model.Ridge".
    import_path: str
    #: classifier, regressor or clusterer (a test checks it against the class).
    kind: str
    update: str | None = None
    serializer: str = SERIALIZER

    @property
    def supports_update(self) -> bool:
        """Whether the model accepts PATCH."""
        return self.update is not None

    @property
    def estimator(self) -> type:
        """The estimator class (importing its module)."""
        module, _, name = self.import_path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def wrapper(self) -> ModelWrapper:
        """A fresh wrapper for this entry."""
        return wrap_estimator(
            self.import_path, self.name, serializer=self.serializer, update=self.update
        )


#: Every built-in model, in the order `ml-server catalog` lists them.
ENTRIES: tuple[CatalogEntry, ...] = (
    # regression
    CatalogEntry("linear-regression", "sklearn.linear_model.LinearRegression", "regressor"),
    CatalogEntry("ridge", "sklearn.linear_model.Ridge", "regressor"),
    CatalogEntry("lasso", "sklearn.linear_model.Lasso", "regressor"),
    CatalogEntry("elastic-net", "sklearn.linear_model.ElasticNet", "regressor"),
    CatalogEntry(
        "sgd-regressor", "sklearn.linear_model.SGDRegressor", "regressor", update=PARTIAL_FIT
    ),
    CatalogEntry("decision-tree-regressor", "sklearn.tree.DecisionTreeRegressor", "regressor"),
    CatalogEntry("random-forest-regressor", "sklearn.ensemble.RandomForestRegressor", "regressor"),
    CatalogEntry(
        "gradient-boosting-regressor", "sklearn.ensemble.GradientBoostingRegressor", "regressor"
    ),
    CatalogEntry(
        "hist-gradient-boosting-regressor",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "regressor",
    ),
    CatalogEntry("k-neighbors-regressor", "sklearn.neighbors.KNeighborsRegressor", "regressor"),
    CatalogEntry("svr", "sklearn.svm.SVR", "regressor"),
    CatalogEntry(
        "mlp-regressor", "sklearn.neural_network.MLPRegressor", "regressor", update=PARTIAL_FIT
    ),
    # classification
    CatalogEntry("logistic-regression", "sklearn.linear_model.LogisticRegression", "classifier"),
    CatalogEntry(
        "sgd-classifier", "sklearn.linear_model.SGDClassifier", "classifier", update=PARTIAL_FIT
    ),
    CatalogEntry("gaussian-nb", "sklearn.naive_bayes.GaussianNB", "classifier", update=PARTIAL_FIT),
    CatalogEntry("decision-tree-classifier", "sklearn.tree.DecisionTreeClassifier", "classifier"),
    CatalogEntry(
        "random-forest-classifier", "sklearn.ensemble.RandomForestClassifier", "classifier"
    ),
    CatalogEntry(
        "gradient-boosting-classifier", "sklearn.ensemble.GradientBoostingClassifier", "classifier"
    ),
    CatalogEntry(
        "hist-gradient-boosting-classifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "classifier",
    ),
    CatalogEntry("k-neighbors-classifier", "sklearn.neighbors.KNeighborsClassifier", "classifier"),
    CatalogEntry("svc", "sklearn.svm.SVC", "classifier"),
    CatalogEntry(
        "mlp-classifier", "sklearn.neural_network.MLPClassifier", "classifier", update=PARTIAL_FIT
    ),
    # clustering
    CatalogEntry("k-means", "sklearn.cluster.KMeans", "clusterer"),
    CatalogEntry(
        "mini-batch-k-means", "sklearn.cluster.MiniBatchKMeans", "clusterer", update=PARTIAL_FIT
    ),
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
