"""The array path: which fitted models take conformed rows as one array, and that what they
answer is what scikit-learn answers on the DataFrame, bit for bit."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlserver import ModelWrapper, Registry, wrap_estimator
from mlserver.arrays import array_model
from mlserver.frames.encode import dumps, encode_array, encode_frame
from mlserver.frames.orients import ORIENTS
from mlserver.service import Service
from mlserver.store import SQLStore, Status
from support import classification, regression, wait_until

COLUMNS = ["a", "b", "c"]


def rows(x: pd.DataFrame) -> np.ndarray:
    """The rows as the numeric fast path decodes them: one C-ordered float64 array."""
    return np.ascontiguousarray(x.to_numpy(dtype=np.float64))


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(),
        RandomForestClassifier(n_estimators=5, random_state=0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_plain_estimators_answer_as_on_the_frame(estimator) -> None:
    """Same predictions and probabilities as on the DataFrame, exactly, and no warning about
    feature names; the served model itself keeps its names."""
    x, y = classification(200)
    model = estimator.fit(x, y)
    form = array_model(model, COLUMNS)
    assert form is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("predict", "predict_proba"):
            expected = getattr(model, method)(x)
            np.testing.assert_array_equal(getattr(form, method)(rows(x)), expected)
    assert list(model.feature_names_in_) == COLUMNS


def test_linear_regression_bit_for_bit() -> None:
    """BLAS rounds by memory layout: the form lays rows out as a DataFrame does."""
    x, y = regression(500)
    model = LinearRegression().fit(x, y)
    form = array_model(model, ["u", "v"])
    assert form.predict(rows(x)).tolist() == model.predict(x).tolist()


def test_name_aware_models_keep_the_frame() -> None:
    """Pipelines, column transformers, function transformers and ensembles of estimators
    fitted on names need the DataFrame: no array form."""
    x, y = classification(100)
    name_aware = [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        ColumnTransformer([("scale", StandardScaler(), ["a", "b"])]).fit(x),
        FunctionTransformer(lambda frame: frame[["a"]]).fit(x),
        VotingClassifier([("lr", LogisticRegression())]).fit(x, y),
        CalibratedClassifierCV(LogisticRegression()).fit(x, y),  # estimators in plain objects
    ]
    for model in name_aware:
        assert array_model(model, COLUMNS) is None, type(model).__name__


def test_other_columns_or_other_libraries_keep_the_frame() -> None:
    """Columns other than the training order, an unfitted model or a foreign one get no
    array fast path: they keep the frame."""
    x, y = classification(100)
    model = LogisticRegression().fit(x, y)
    assert array_model(model, ["c", "b", "a"]) is None  # not the training order
    assert array_model(model, ["a", "b"]) is None
    assert array_model(LogisticRegression(), COLUMNS) is None  # not fitted

    class Foreign:
        n_features_in_ = 3

        def predict(self, x):
            return np.zeros(len(x))

    assert array_model(Foreign(), COLUMNS) is None


class FrameOnly(ModelWrapper):
    """A wrapper whose own predict needs a DataFrame: it must always get one."""

    name = "frame-only"

    def make_model(self, **modkwargs):
        return LogisticRegression(**modkwargs)

    def predict(self, model, x):
        assert isinstance(x, pd.DataFrame), type(x)
        return model.predict(x[["a", "b", "c"]])


@pytest.fixture
def service(sqlite_url):
    service = Service(
        Registry([wrap_estimator(LogisticRegression, "plain"), FrameOnly]), SQLStore(sqlite_url)
    )
    yield service
    service.close()


def test_service_answers_match_on_both_paths(service) -> None:
    """The stock wrapper (array path) and a wrapper of its own (frame path) answer the same,
    equal to scikit-learn's own predictions, in every orient."""
    x, y = classification(80)
    reference = LogisticRegression().fit(x, y)
    for model in ("plain", "frame-only"):
        claim = service.fit(
            model, x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split"
        )
        version = wait_until(
            lambda m=model, k=claim.version.key: (
                (v := service.status(m, key=k)).status is not Status.RUNNING and v
            )
        )
        assert version.status is Status.FINISHED, version.error
        for orient in ORIENTS:
            result = service.predict(
                model, key=claim.version.key, x=x.to_json(orient=orient), orient=orient
            )
            served = pd.read_json(io.StringIO(result.y), orient=orient)
            assert served.iloc[:, 0].tolist() == reference.predict(x).tolist(), (model, orient)
            if orient not in ("values", "records"):
                assert served.index.tolist() == x.index.tolist(), (model, orient)


@pytest.mark.parametrize("orient", ORIENTS)
@pytest.mark.parametrize(
    "values",
    [
        np.array([1, -2, 3]),
        np.array([0.1 + 0.2, 1 / 3, -1e-300]),
        np.array([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32),
        np.array([True, False, True]),
        np.array(["x", "y", "z"], dtype=object),
        np.array([1, 2, 3], dtype=">i8"),
    ],
    ids=["int", "float", "float32", "bool", "object", "big-endian"],
)
@pytest.mark.parametrize("index", [None, pd.Index([10, 11, 12])], ids=["range", "labels"])
def test_encode_array_is_encode_frame(orient, values, index) -> None:
    """Encoding from the array gives the JSON text that encoding the frame gives."""
    table = values if values.ndim == 2 else values[:, None]
    columns = ["p", "q"][: table.shape[1]]
    frame = pd.DataFrame(table, index=index, columns=pd.Index(columns, dtype=object))
    assert dumps(encode_array(table, columns, index, orient)) == dumps(encode_frame(frame, orient))


def test_transform_keeps_the_frame() -> None:
    """transform's output follows set_output and its column names: never taken as an array."""
    x, _ = classification(50)
    scaler = StandardScaler().set_output(transform="pandas").fit(x)
    form = array_model(scaler, COLUMNS)
    assert form is not None and getattr(form, "transform", None) is None
    assert list(scaler.transform(x).columns) == COLUMNS


def test_integer_labels() -> None:
    """Fitted on integer column labels (no feature_names_in_): the array answers the same."""
    x, y = classification(100)
    x.columns = [0, 1, 2]
    model = LogisticRegression().fit(x, y)
    form = array_model(model, [0, 1, 2])
    assert form is not None
    assert form.predict_proba(rows(x)).tolist() == model.predict_proba(x).tolist()
