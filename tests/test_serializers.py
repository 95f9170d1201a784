"""Serializers: the same contract for joblib, skops and ONNX, and parity with scikit-learn.

Tolerances, stated once: labels must be identical; probabilities within 1e-5 absolute and
regression values within 1e-4 relative for ONNX (it computes in float32); joblib and skops
round-trip bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV
from sklearn.neighbors import KNeighborsClassifier, RadiusNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC, NuSVC

from mlserver import wrap_estimator
from mlserver.errors import ConfigurationError, NotExportable, UntrustedModel
from mlserver.frames.schema import Schema
from mlserver.serializers import (
    JoblibSerializer,
    OnnxSerializer,
    PickleSerializer,
    SkopsSerializer,
    resolve_serializer,
)
from mlserver.training import TrainingTask, train

RNG = np.random.default_rng(0)
X = pd.DataFrame(RNG.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
# Well separated: no row sits near a decision boundary, so float32 cannot flip a label.
X = X[(X["a"] + X["b"]).abs() > 0.3].reset_index(drop=True)
BINARY = (X["a"] + X["b"] > 0).astype(int)
MULTI = pd.Series(np.select([X["a"] < -0.6, X["a"] > 0.6], [0, 2], 1))
STRINGS = pd.Series(np.where(BINARY == 1, "yes", "no"))
VALUES = 2.0 * X["a"] - X["c"] + 0.5
MIXED = X.assign(city=np.where(X["d"] > 0, "oslo", "lima"))
TREES = ("sklearn.tree._tree.Tree",)


def _fitted(model, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. MLP convergence on tiny data
        return model.fit(x, y)


CASES = {
    "linear-regression": (LinearRegression, X, VALUES),
    "ridge": (Ridge, X, VALUES),
    "logistic-binary": (LogisticRegression, X, BINARY),
    "logistic-multiclass": (LogisticRegression, X, MULTI),
    "logistic-strings": (LogisticRegression, X, STRINGS),
    "random-forest-classifier": (lambda: RandomForestClassifier(20, random_state=0), X, BINARY),
    "random-forest-regressor": (lambda: RandomForestRegressor(20, random_state=0), X, VALUES),
    "gradient-boosting": (lambda: GradientBoostingClassifier(n_estimators=20), X, BINARY),
    "sgd-regressor": (lambda: SGDRegressor(random_state=0), X, VALUES),
    "k-means": (lambda: KMeans(3, n_init=2, random_state=0), X, None),
    "mlp-classifier": (lambda: MLPClassifier(max_iter=300, random_state=0), X, BINARY),
    "scaled-logistic": (lambda: make_pipeline(StandardScaler(), LogisticRegression()), X, BINARY),
    "one-hot-pipeline": (
        lambda: make_pipeline(
            ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough"),
            LogisticRegression(),
        ),
        MIXED,
        BINARY,
    ),
}


def assert_same_predictions(native, served, x, exact: bool) -> None:
    expected, got = native.predict(x), served.predict(x)
    if expected.dtype.kind in "iuObU" or exact:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if hasattr(native, "predict_proba"):
        tolerance = 0 if exact else 1e-5
        np.testing.assert_allclose(served.predict_proba(x), native.predict_proba(x), atol=tolerance)
        np.testing.assert_array_equal(served.classes_, native.classes_)


@pytest.mark.parametrize("case", CASES)
def test_onnx_parity_with_scikit_learn(case):
    """Each estimator exported to ONNX predicts what scikit-learn predicts (float32 tolerance)."""
    make, x, y = CASES[case]
    native = _fitted(make(), x, y)
    serializer = OnnxSerializer()
    served = serializer.loads(serializer.dumps(native, Schema.of(x)))
    assert_same_predictions(native, served, x, exact=False)


@pytest.mark.parametrize("case", CASES)
def test_joblib_and_skops_round_trip_exactly(case):
    """joblib and skops (trusting tree and optimizer types) give back bit-identical models."""
    make, x, y = CASES[case]
    native = _fitted(make(), x, y)
    trusted = (*TREES, "sklearn.neural_network._stochastic_optimizers.AdamOptimizer")
    for serializer in (JoblibSerializer(), SkopsSerializer(trusted=trusted)):
        served = serializer.loads(serializer.dumps(native, Schema.of(x)))
        assert type(served) is type(native)
        assert_same_predictions(native, served, x, exact=True)


def test_onnx_uses_one_input_per_column_only_for_mixed_frames():
    """Numeric frames become one float tensor; a string column makes one input per column."""
    serializer = OnnxSerializer()
    numeric = serializer.loads(
        serializer.dumps(_fitted(LinearRegression(), X, VALUES), Schema.of(X))
    )
    assert [i.name for i in numeric.session.get_inputs()] == ["input"]
    assert numeric.session.get_inputs()[0].type == "tensor(float)"
    make, x, y = CASES["one-hot-pipeline"]
    mixed = serializer.loads(serializer.dumps(_fitted(make(), x, y), Schema.of(x)))
    inputs = {i.name: i.type for i in mixed.session.get_inputs()}
    assert inputs == {
        "a": "tensor(float)",
        "b": "tensor(float)",
        "c": "tensor(float)",
        "d": "tensor(float)",
        "city": "tensor(string)",
    }


def test_onnx_sessions_use_the_configured_threads():
    """Sessions get one intra-op thread by default, and what the serializer is told."""
    model = _fitted(LinearRegression(), X, VALUES)
    for threads in (1, 2):
        serializer = OnnxSerializer(intra_op_threads=threads)
        session = serializer.loads(serializer.dumps(model, Schema.of(X))).session
        assert session.get_session_options().intra_op_num_threads == threads


class Opaque(RegressorMixin, BaseEstimator):
    """An estimator skl2onnx has never heard of."""

    def fit(self, x, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)


def test_onnx_refuses_unknown_estimators_with_the_converter_message():
    """An estimator skl2onnx cannot convert fails at dumps, naming the estimator."""
    with pytest.raises(Exception, match="Opaque"):
        OnnxSerializer().dumps(Opaque().fit(X, VALUES), Schema.of(X))


def test_onnx_keeps_a_native_model_for_updates_unless_told_not_to():
    """The artifact carries the native model for updates; keep_native=False drops it."""
    model = _fitted(SGDRegressor(random_state=0), X, VALUES)
    kept = OnnxSerializer()
    native = kept.loads_for_update(kept.dumps(model, Schema.of(X)))
    np.testing.assert_array_equal(native.coef_, model.coef_)
    bare = OnnxSerializer(keep_native=False)
    assert not bare.can_update
    blob = bare.dumps(model, Schema.of(X))
    with pytest.raises(ValueError, match="keep_native"):
        bare.loads_for_update(blob)
    assert len(blob) < len(kept.dumps(model, Schema.of(X)))


def test_skops_refuses_untrusted_types_and_names_them():
    """A skops blob holding a type outside the configured list is refused, naming the type."""
    model = _fitted(RandomForestClassifier(5, random_state=0), X, BINARY)
    blob = SkopsSerializer().dumps(model)
    with pytest.raises(UntrustedModel, match=r"sklearn\.tree\._tree\.Tree") as refused:
        SkopsSerializer().loads(blob)
    assert refused.value.types == list(TREES)
    assert type(SkopsSerializer(trusted=TREES).loads(blob)) is RandomForestClassifier


def test_resolver_knows_every_backend():
    """Aliases, classes and instances all resolve; unknown aliases name the known ones."""
    assert isinstance(resolve_serializer("onnx"), OnnxSerializer)
    assert isinstance(resolve_serializer("skops"), SkopsSerializer)
    assert isinstance(resolve_serializer(JoblibSerializer), JoblibSerializer)
    instance = OnnxSerializer(intra_op_threads=2)
    assert resolve_serializer(instance) is instance
    assert isinstance(resolve_serializer("pickle"), PickleSerializer)
    with pytest.raises(ConfigurationError, match="joblib, onnx, pickle, skops"):
        resolve_serializer("cloudpickle")


def test_library_versions_name_what_each_backend_needs():
    """Each backend records the libraries its skew check compares."""
    assert set(OnnxSerializer.skew_libraries) <= set(OnnxSerializer().library_versions())
    assert "skops" in SkopsSerializer().library_versions()
    assert "joblib" in JoblibSerializer().library_versions()


# -- ONNX serves the estimator's own methods, and only graphs that answer as it does -------


# Rows near the boundary too, where a tuned threshold changes labels.
NEAR = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 4)), columns=["a", "b", "c", "d"])
NEAR_LABELS = (NEAR["a"] + NEAR["b"] > 0).astype(int)


def _onnx(model, x=X):
    serializer = OnnxSerializer()
    blob = serializer.dumps(model, Schema.of(x))
    serializer.verify(model, blob, x)
    return serializer.loads(blob)


@pytest.mark.parametrize(
    "make",
    [
        SVC,
        NuSVC,
        lambda: SGDClassifier(loss="hinge", random_state=0),
        Perceptron,
        RidgeClassifier,
        LinearSVC,
    ],
)
@pytest.mark.parametrize("y", [BINARY, MULTI], ids=["binary", "multiclass"])
def test_onnx_classifiers_without_probabilities_serve_their_decision_function(make, y):
    """No predict_proba where the estimator has none; decision_function equals its own."""
    native = _fitted(make(), X, y)
    served = _onnx(native)
    assert not hasattr(native, "predict_proba")
    assert not hasattr(served, "predict_proba")
    assert served.methods == ["predict", "decision_function"]
    np.testing.assert_array_equal(served.predict(X), native.predict(X))
    expected = native.decision_function(X.astype(np.float32).astype(np.float64))
    got = served.decision_function(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1, abs(expected).max()))


def test_onnx_records_the_method_set_in_the_graph():
    """The graph's metadata names the served methods; a transformer has no predict."""
    served = _onnx(_fitted(LogisticRegression(), X, MULTI))
    assert served.methods == ["predict", "predict_proba"]
    assert not hasattr(served, "decision_function")
    meta = served.session.get_modelmeta().custom_metadata_map
    assert set(orjson.loads(meta["mlserver.methods"])) == {"predict", "predict_proba"}
    scaler = _onnx(_fitted(StandardScaler(), X, None))
    assert scaler.methods == ["transform"] and not hasattr(scaler, "predict")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: TunedThresholdClassifierCV(LogisticRegression()), "does not reproduce predict"),
        (lambda: FixedThresholdClassifier(LogisticRegression(), threshold=0.9), "cannot export"),
        (RadiusNeighborsClassifier, "fails on the training rows"),
        (Opaque, "cannot export Opaque"),
    ],
    ids=["tuned-threshold", "fixed-threshold", "radius-neighbors", "unknown"],
)
def test_onnx_refuses_models_its_graph_would_answer_differently(make, reason):
    """A graph that differs from its model on the training rows, or none at all, is refused
    with what went wrong and the serializers that would work."""
    y = VALUES[: len(NEAR)] if make is Opaque else NEAR_LABELS
    with pytest.raises(NotExportable, match=reason) as refused:
        _onnx(_fitted(make(), NEAR, y), NEAR)
    assert "joblib or skops" in str(refused.value)


def test_training_with_onnx_fails_when_verification_fails():
    """jobs.train runs the check on the training rows, so the version would be FAILED."""
    wrapper = wrap_estimator(TunedThresholdClassifierCV, "tuned", serializer="onnx")
    model = TunedThresholdClassifierCV(LogisticRegression())
    task = TrainingTask(wrapper=wrapper, x=NEAR, y=NEAR_LABELS, model=model, schema=Schema.of(NEAR))
    with pytest.raises(NotExportable, match=r"\d+ of \d+ labels differ"):
        train(task)


def test_onnx_runtime_errors_and_unrepresentable_rows_are_value_errors():
    """onnxruntime's own failures and rows the graph cannot take become ValueError (a 422)."""
    neighbours = _onnx(_fitted(KNeighborsClassifier(), X, BINARY))
    with pytest.raises(ValueError, match="onnxruntime cannot run the graph"):
        neighbours.predict(X.iloc[:0])
    logistic = _onnx(_fitted(LogisticRegression(), X, BINARY))
    with pytest.raises(ValueError, match="missing values"):
        logistic.predict(X.iloc[:2] * np.nan)
    with pytest.raises(ValueError, match="float32's range"):
        logistic.predict_proba((X.iloc[:2] * 1e39).to_numpy())


def test_importing_serializers_loads_no_backend():
    """`import mlserver.serializers` costs only the contract: ONNX and skops load when a name
    asks for them (an attribute of the package, or `resolve_serializer`'s alias)."""
    import subprocess
    import sys

    backends = ["onnx", "onnxruntime", "skl2onnx", "skops"]
    code = (
        "import sys, mlserver.serializers as s;"
        f"print(','.join(name for name in {backends!r} if name in sys.modules));"
        "s.resolve_serializer('skops');"
        "print(s.OnnxSerializer.__name__, 'skops' in sys.modules, 'skl2onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", "OnnxSerializer True False"]
