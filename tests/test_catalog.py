"""The built-in catalog: every entry trains and predicts like its estimator, through the app."""

from __future__ import annotations

import inspect
import json
import pickle
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from falcon import testing

from mlserver.catalog import ENTRIES, SERIALIZER, CatalogEntry, catalog
from support import classification, fit_body, in_process, predict, regression, settled, train

# Part of the HTTP contract: names are only ever added to this list.
NAMES = [
    "linear-regression",
    "ridge",
    "lasso",
    "elastic-net",
    "sgd-regressor",
    "decision-tree-regressor",
    "random-forest-regressor",
    "gradient-boosting-regressor",
    "hist-gradient-boosting-regressor",
    "k-neighbors-regressor",
    "svr",
    "mlp-regressor",
    "logistic-regression",
    "sgd-classifier",
    "gaussian-nb",
    "decision-tree-classifier",
    "random-forest-classifier",
    "gradient-boosting-classifier",
    "hist-gradient-boosting-classifier",
    "k-neighbors-classifier",
    "svc",
    "mlp-classifier",
    "k-means",
    "mini-batch-k-means",
]
UPDATABLE = {
    "sgd-regressor",
    "mlp-regressor",
    "sgd-classifier",
    "gaussian-nb",
    "mlp-classifier",
    "mini-batch-k-means",
}

by_name = pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
# Tiny training sets do not let the networks converge; the warning is beside the point here
# (the suite turns warnings into errors, also inside the training threads).
converging = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def client(tmp_path) -> Iterator[testing.TestClient]:
    """The catalog served from a fresh SQLite file, called without a server."""
    with in_process(catalog(), f"sqlite:///{tmp_path / 'models.db'}") as client:
        yield client


def data(entry: CatalogEntry, seed: int = 0) -> tuple[pd.DataFrame, pd.Series | None]:
    """Training data that suits the entry's kind: a target for supervised models only."""
    if entry.kind == "regressor":
        return regression(seed=seed)
    x, y = classification(seed=seed)
    return (x, y) if entry.kind == "classifier" else (x, None)


def reproducible(entry: CatalogEntry) -> dict:
    """modkwargs that make a fit repeatable, so the served and the local model agree."""
    takes = inspect.signature(entry.estimator).parameters
    return {"random_state": 0} if "random_state" in takes else {}


def served(client: testing.TestClient, model: str, key: str, x: pd.DataFrame) -> np.ndarray:
    """The server's predictions for `x`, parsed exactly (pandas' JSON reader rounds floats)."""
    response = predict(client, model, key, x)
    assert response.status_code == 200, response.text
    return np.array([row[0] for row in json.loads(response.json["y"])["data"]])


def test_names_are_pinned():
    """The catalog serves exactly the pinned names, in the pinned order, each once."""
    assert [entry.name for entry in ENTRIES] == NAMES
    # and the route of imported models, which trains nothing
    assert [wrapper.name for wrapper in catalog()] == [*NAMES, "imported"]


def test_update_support_is_pinned():
    """Exactly the estimators with partial_fit offer PATCH, through partial_fit."""
    assert {entry.name for entry in ENTRIES if entry.supports_update} == UPDATABLE
    for entry in ENTRIES:
        assert entry.supports_update == (entry.update == "partial_fit")
        assert entry.wrapper().supports_update == entry.supports_update


@by_name
def test_entries_name_their_class_kind_and_update_truly(entry):
    """Each entry's import path, kind and update method are those of its class (the entries
    name them so that the catalog starts without importing every estimator)."""
    from sklearn.base import ClassifierMixin, ClusterMixin, RegressorMixin
    from sklearn.utils import all_estimators

    assert (entry.import_path.split(".")[-1], entry.estimator) in all_estimators()
    mixin = {"classifier": ClassifierMixin, "regressor": RegressorMixin}.get(
        entry.kind, ClusterMixin
    )
    assert issubclass(entry.estimator, mixin)
    assert entry.update is None or callable(getattr(entry.estimator, entry.update))
    assert entry.wrapper().__doc__.startswith(entry.import_path)


def test_serving_the_catalog_imports_an_estimator_only_once_it_is_used():
    """Building and starting the catalog's app, /models and /openapi.json import no
    estimator module; the first fit of a route imports its own only."""
    code = """
import sys
from falcon import testing
from mlserver import create_app
from mlserver.catalog import catalog
from mlserver.store import SQLStore
heavy = ("sklearn.ensemble", "sklearn.svm", "sklearn.neighbors", "sklearn.neural_network",
         "sklearn.tree", "sklearn.cluster", "sklearn.naive_bayes")
app = create_app(catalog(), SQLStore(sys.argv[1]))
client = testing.TestClient(app)
assert client.simulate_get("/models").status_code == 200
assert client.simulate_get("/openapi.json").status_code == 200
print(",".join(m for m in heavy if m in sys.modules))
x = {"columns": ["a"], "index": [0, 1, 2, 3], "data": [[0.0], [1.0], [2.0], [3.0]]}
y = {"name": "t", "index": [0, 1, 2, 3], "data": [0, 1, 0, 1]}
answer = client.simulate_put("/svc", json={"x": x, "y": y, "orient": "split"})
assert answer.status_code == 202, answer.text
print(",".join(m for m in heavy if m in sys.modules))
app.close()
"""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{folder}/models.db"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.splitlines()
    assert before == ""
    assert after == "sklearn.svm"


def test_every_entry_uses_the_catalog_serializer():
    """Every entry stores its versions with the one catalog serializer (joblib for now)."""
    assert SERIALIZER == "joblib"
    assert {wrapper.get_serializer().name for wrapper in catalog()} == {"joblib"}


def test_each_call_builds_a_fresh_registry():
    """Two catalogs share no registry and no wrapper, so two apps never see each other's."""
    first, second = catalog(), catalog()
    assert first is not second
    assert not {id(w) for w in first} & {id(w) for w in second}


@by_name
def test_wrappers_pickle(entry):
    """Each wrapper survives pickling, as a process pool needs to run its jobs."""
    copy = pickle.loads(pickle.dumps(entry.wrapper()))
    assert copy.name == entry.name
    assert copy.supports_update == entry.supports_update
    assert type(copy.make_model()) is entry.estimator


@converging
@by_name
def test_trains_and_predicts_like_the_estimator(client, entry):
    """A PUT trains the entry, and a POST answers what the estimator itself predicts."""
    x, y = data(entry)
    modkwargs = reproducible(entry)
    key, state = train(client, entry.name, x, y, modkwargs=modkwargs)
    assert state["status"] == "FINISHED"
    expected = entry.estimator(**modkwargs).fit(x, y).predict(x)
    np.testing.assert_array_equal(served(client, entry.name, key, x), expected)


@converging
@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e.supports_update], ids=lambda entry: entry.name
)
def test_updatable_entries_learn_from_patch(client, entry):
    """A PATCH updates the model as partial_fit would, into version 2."""
    x, y = data(entry)
    more_x, more_y = data(entry, seed=7)
    modkwargs = reproducible(entry)
    key, _ = train(client, entry.name, x, y, modkwargs=modkwargs)
    response = client.simulate_patch(
        f"/{entry.name}", json=fit_body(more_x, more_y, **{"model-key": key})
    )
    assert response.status_code == 202, response.text
    state = settled(client, entry.name, key)
    assert (state["status"], state["version"]) == ("FINISHED", 2), state["error"]
    local = entry.estimator(**modkwargs).fit(x, y)
    local.partial_fit(more_x, more_y)
    np.testing.assert_array_equal(served(client, entry.name, key, x), local.predict(x))


def test_patch_of_a_key_whose_parameters_rule_out_partial_fit_is_a_422(client):
    """MLPClassifier(solver="lbfgs") has no partial_fit: the PATCH is refused at once, naming
    why, and the key keeps its one finished version (no FAILED job is recorded)."""
    x, y = data(next(e for e in ENTRIES if e.name == "mlp-classifier"))
    modkwargs = {"solver": "lbfgs", "max_iter": 50, "random_state": 0}
    key, state = train(client, "mlp-classifier", x, y, modkwargs=modkwargs)
    assert state["status"] == "FINISHED"
    response = client.simulate_patch("/mlp-classifier", json=fit_body(x, y, **{"model-key": key}))
    assert response.status_code == 422, response.text
    assert "partial_fit" in response.json["description"]
    assert "lbfgs" in response.json["description"]
    state = client.simulate_get("/mlp-classifier", params={"model-key": key}).json
    assert (state["status"], state["version"]) == ("FINISHED", 1)


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if not e.supports_update], ids=lambda entry: entry.name
)
def test_other_entries_refuse_patch(client, entry):
    """A PATCH on an entry without partial_fit is a 405 whose Allow header omits PATCH."""
    response = client.simulate_patch(f"/{entry.name}", json={"model-key": "k"})
    assert response.status_code == 405
    allowed = {verb.strip() for verb in response.headers["allow"].split(",")}
    assert "PATCH" not in allowed and {"PUT", "POST"} <= allowed


@by_name
def test_unknown_modkwargs_are_a_400_naming_them(client, entry):
    """An argument the estimator does not take is a 400 that names it, and nothing is stored."""
    x, y = data(entry)
    response = client.simulate_put(
        f"/{entry.name}", json=fit_body(x, y, modkwargs={"bogus_knob": 1})
    )
    assert response.status_code == 400
    assert "bogus_knob" in response.json["description"]
    assert client.simulate_get(f"/{entry.name}").json["keys"] == []


@by_name
def test_ill_typed_modkwargs_are_a_400_naming_them(client, entry):
    """A numeric constructor argument given as text is a 400 that names it, before training."""
    defaults = entry.estimator().get_params()
    numeric = sorted(
        name
        for name, value in defaults.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    parameter = numeric[0]
    x, y = data(entry)
    response = client.simulate_put(
        f"/{entry.name}", json=fit_body(x, y, modkwargs={parameter: "lots"})
    )
    assert response.status_code == 400, response.text
    assert parameter in response.json["description"]
    assert client.simulate_get(f"/{entry.name}").json["keys"] == []
