"""Validation and prequential scores: the request checks, the held-out split, and what `train`
records, compared with what scikit-learn computes itself on the same rows."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.metrics import get_scorer
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlserver import ModelWrapper, wrap_estimator
from mlserver.errors import InvalidPayload
from mlserver.scoring import (
    checked_rows,
    checked_scorable,
    checked_scoring,
    checked_validation,
    holdout,
    score,
    seed_of,
)
from mlserver.serializers.joblib import JoblibSerializer
from mlserver.training import TrainingTask, train


class ScaledLogistic(ModelWrapper):
    """A pipeline, to show validation scores the whole pipeline."""

    name = "scaled-logistic"

    def make_model(self, **modkwargs: Any) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(**modkwargs))


def classes(rows: int = 90, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Three unequal, noisy classes, a non-default index and mixed dtypes."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)).round(6), columns=["a", "b", "c"])
    x["n"] = (np.arange(rows) % 3).astype("int32")
    x.index = x.index + 1000
    noise = rng.normal(scale=0.8, size=rows)
    y = pd.Series(np.digitize(x["a"] + noise, [-0.3, 0.9]), index=x.index, name="label")
    return x, y


def regression(rows: int = 80, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    y = pd.Series(2 * x["a"] - x["b"] + rng.normal(scale=0.3, size=rows), name="t")
    return x, y


def expected(model: Any, x, y, fraction: float, seed: int, scoring: str | None = None) -> float:
    """scikit-learn's own score on its own split, computed apart from mlserver."""
    stratify = y if (y is not None and is_classifier(model)) else None
    if y is None:
        x_fit, x_held = train_test_split(x, test_size=fraction, random_state=seed)
        model.fit(x_fit)
        return model.score(x_held) if scoring is None else get_scorer(scoring)(model, x_held)
    x_fit, x_held, y_fit, y_held = train_test_split(
        x, y, test_size=fraction, random_state=seed, stratify=stratify
    )
    model.fit(x_fit, y_fit)
    if scoring is None:
        return model.score(x_held, y_held)
    return get_scorer(scoring)(model, x_held, y_held)


def fit_task(wrapper: ModelWrapper, x, y, **options: Any) -> TrainingTask:
    modkwargs = options.pop("modkwargs", {})
    return TrainingTask(wrapper, x, y, model=wrapper.make_model(**modkwargs), **options)


# -- request checks -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "share"), [(None, None), (0.2, 0.2), ("0.25", 0.25), (0.5, 0.5)])
def test_validation_accepts_a_share(value, share):
    assert checked_validation(value) == share


@pytest.mark.parametrize(
    "value", [True, False, 0, 0.0, -0.1, 0.51, 1, "nan", float("nan"), "inf", "a fifth", [0.2], {}]
)
def test_validation_refuses(value):
    with pytest.raises(InvalidPayload) as info:
        checked_validation(value)
    assert info.value.parameter == "validation"


def test_scoring_accepts_scorer_names():
    assert checked_scoring(None) is None
    assert checked_scoring("accuracy") == "accuracy"
    assert checked_scoring("neg_mean_squared_error") == "neg_mean_squared_error"


def test_scoring_refuses_unknown_names_with_suggestions():
    with pytest.raises(InvalidPayload) as info:
        checked_scoring("acuracy")
    assert info.value.parameter == "scoring"
    assert "accuracy" in str(info.value)
    with pytest.raises(InvalidPayload) as info:
        checked_scoring("zzzzzzzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("value", [1, True, ["accuracy"], {"name": "accuracy"}, ""])
def test_scoring_refuses_non_names(value):
    with pytest.raises(InvalidPayload) as info:
        checked_scoring(value)
    assert info.value.parameter == "scoring"


def test_scorable_refuses_validation_without_any_score():
    from sklearn.preprocessing import StandardScaler as NoScore

    with pytest.raises(InvalidPayload) as info:
        checked_scorable(NoScore(), None, 0.2)
    assert info.value.parameter == "scoring"
    assert "NoScore" not in str(info.value) and "StandardScaler" in str(info.value)
    # A pipeline ending in a model without score has none either.
    with pytest.raises(InvalidPayload):
        checked_scorable(make_pipeline(StandardScaler(), StandardScaler()), None, 0.2)
    # Accepted: a scorer given, no validation, or a model with score.
    checked_scorable(NoScore(), "accuracy", 0.2)
    checked_scorable(NoScore(), None, None)
    checked_scorable(LogisticRegression(), None, 0.2)
    checked_scorable(ScaledLogistic().make_model(), None, 0.2)


def test_rows_need_both_sides():
    checked_rows(2, 0.5)
    checked_rows(10, 0.1)
    checked_rows(1, None)
    for rows, share in [(1, 0.5), (1, 0.1), (0, 0.2)]:
        with pytest.raises(InvalidPayload) as info:
            checked_rows(rows, share)
        assert info.value.parameter == "validation"


def test_seed_is_deterministic_and_in_numpy_range():
    assert seed_of("key-a") == seed_of("key-a")
    assert seed_of("key-a") != seed_of("key-b")
    assert 0 <= seed_of("é" * 100) < 2**32
    np.random.RandomState(seed_of("key-a"))


# -- the split ------------------------------------------------------------------------------


def test_holdout_is_deterministic_and_keeps_index_and_dtypes():
    x, y = classes()
    first = holdout(x, y, 0.3, 7, stratify=True)
    again = holdout(x, y, 0.3, 7, stratify=True)
    other = holdout(x, y, 0.3, 8, stratify=True)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
    assert list(first[2].index) != list(other[2].index)
    x_fit, y_fit, x_held, y_held = first
    assert len(x_held) == math.ceil(0.3 * len(x)) and len(x_fit) + len(x_held) == len(x)
    assert set(x_fit.index).isdisjoint(x_held.index)
    assert set(x_fit.index) | set(x_held.index) == set(x.index)
    assert list(x_fit.index) == list(y_fit.index) and list(x_held.index) == list(y_held.index)
    assert dict(x_fit.dtypes) == dict(x.dtypes) and x_held["n"].dtype == np.int32
    pd.testing.assert_series_equal(y_held, y.loc[y_held.index])


def test_holdout_stratifies_classes():
    x, y = classes(rows=200)
    shares = y.value_counts(normalize=True).sort_index()
    _, y_fit, _, y_held = holdout(x, y, 0.25, 3, stratify=True)
    for part in (y_fit, y_held):
        got = part.value_counts(normalize=True).sort_index()
        assert (got - shares).abs().max() < 0.02
    # The same split as scikit-learn's own stratified one.
    _, reference = train_test_split(y, test_size=0.25, random_state=3, stratify=y)
    assert list(y_held.index) == list(reference.index)
    # Unstratified: scikit-learn's unstratified split, which differs.
    _, _, _, plain = holdout(x, y, 0.25, 3, stratify=False)
    _, reference = train_test_split(y, test_size=0.25, random_state=3)
    assert list(plain.index) == list(reference.index) != list(y_held.index)


def test_holdout_one_column_frame_stratifies_like_its_series():
    x, y = classes(rows=120)
    *_, held_series = holdout(x, y, 0.2, 5, stratify=True)
    *_, held_frame = holdout(x, y.to_frame(), 0.2, 5, stratify=True)
    assert isinstance(held_frame, pd.DataFrame)
    assert list(held_frame.index) == list(held_series.index)


def test_holdout_falls_back_when_a_class_has_one_member():
    x, y = classes(rows=40)
    y.iloc[0] = 9  # a class of one: stratification is impossible
    with pytest.raises(ValueError):
        train_test_split(x, y, test_size=0.2, random_state=1, stratify=y)
    _, _, x_held, _ = holdout(x, y, 0.2, 1, stratify=True)
    _, reference = train_test_split(x, test_size=0.2, random_state=1)
    assert list(x_held.index) == list(reference.index)


def test_holdout_without_y():
    x, _ = classes()
    x_fit, y_fit, x_held, y_held = holdout(x, None, 0.2, 4, stratify=False)
    assert y_fit is None and y_held is None
    assert len(x_held) == 18 and len(x_fit) == 72


# -- score ----------------------------------------------------------------------------------


def test_score_with_own_score_and_a_scorer():
    x, y = regression()
    model = LinearRegression().fit(x, y)
    own = score(model, x, y, None)
    assert own == {"score": model.score(x, y), "scoring": "score", "rows": len(x)}
    mse = score(model, x, y, "neg_mean_squared_error")
    assert mse["scoring"] == "neg_mean_squared_error"
    assert mse["score"] == pytest.approx(get_scorer("neg_mean_squared_error")(model, x, y))
    assert isinstance(mse["score"], float) and "error" not in mse


def test_score_records_errors_and_never_raises():
    x, y = classes()
    model = LogisticRegression().fit(x, y)
    # roc_auc needs two classes, this y has three: scikit-learn raises, the score records it.
    failed = score(model, x, y, "roc_auc")
    assert failed["score"] is None and failed["rows"] == len(x)
    assert failed["error"].startswith("ValueError: ")
    # A model without score.
    none = score(StandardScaler().fit(x), x, y, None)
    assert none["score"] is None and none["error"].startswith("AttributeError: ")
    # An unfitted model.
    unfitted = score(LinearRegression(), x, y, None)
    assert unfitted["score"] is None and "NotFittedError" in unfitted["error"]


class Huge(LinearRegression):
    """A score that is not finite, and one whose error text is very long."""

    def score(self, X, y=None, sample_weight=None):
        if len(X) % 2:
            raise RuntimeError("x" * 10_000)
        return float("inf")


def test_score_not_finite_and_long_errors_are_bounded():
    x, y = regression()
    model = Huge().fit(x, y)
    infinite = score(model, x, y, None)
    assert infinite["score"] is None and "not finite" in infinite["error"]
    long = score(model, x.iloc[:-1], y.iloc[:-1], None)
    assert long["score"] is None and long["error"].startswith("RuntimeError: xxx")
    assert len(long["error"]) <= 500


# -- train ----------------------------------------------------------------------------------


def test_train_without_validation_is_unchanged():
    x, y = classes()
    artifact = train(fit_task(wrap_estimator(LogisticRegression, "logreg"), x, y))
    assert artifact.metrics == {}
    assert set(artifact.metadata) == {"training_seconds", "serialized_bytes", "user"}


@pytest.mark.parametrize(
    ("estimator", "data", "scoring"),
    [
        (LogisticRegression, classes, None),
        (LogisticRegression, classes, "f1_macro"),
        (LinearRegression, regression, None),
        (LinearRegression, regression, "neg_mean_absolute_error"),
    ],
)
def test_train_validation_equals_sklearn(estimator, data, scoring):
    x, y = data()
    wrapper = wrap_estimator(estimator, "m")
    artifact = train(fit_task(wrapper, x, y, validation=0.3, seed=11, scoring=scoring))
    validation = artifact.metrics["validation"]
    assert validation["scoring"] == (scoring or "score")
    assert validation["rows"] == math.ceil(0.3 * len(x))
    assert validation["score"] == pytest.approx(expected(estimator(), x, y, 0.3, 11, scoring))
    assert artifact.metadata["validation_rows"] == {
        "fitted": len(x) - validation["rows"],
        "held_out": validation["rows"],
    }
    # The version learnt from the fitted rows only: the same coefficients as sklearn's.
    fitted = wrapper.get_serializer().loads(artifact.blob)
    x_fit = holdout(x, y, 0.3, 11, is_classifier(estimator()))[0]
    reference = estimator().fit(x_fit, y.loc[x_fit.index])
    np.testing.assert_allclose(fitted.coef_, reference.coef_)


def test_train_validation_is_deterministic_and_seeded():
    x, y = classes(rows=150)
    wrapper = wrap_estimator(LogisticRegression, "logreg")
    first = train(fit_task(wrapper, x, y, validation=0.2, seed=seed_of("a")))
    again = train(fit_task(wrapper, x, y, validation=0.2, seed=seed_of("a")))
    assert first.metrics == again.metrics and first.sha256 == again.sha256
    scores = {
        train(fit_task(wrapper, x, y, validation=0.2, seed=seed)).metrics["validation"]["score"]
        for seed in range(6)
    }
    assert len(scores) > 1  # the seed chooses the rows


def test_train_validation_of_a_pipeline():
    x, y = classes()
    artifact = train(fit_task(ScaledLogistic(), x, y, validation=0.25, seed=2))
    model = make_pipeline(StandardScaler(), LogisticRegression())
    assert artifact.metrics["validation"]["score"] == pytest.approx(expected(model, x, y, 0.25, 2))


def test_train_validation_of_a_clusterer_without_y():
    x, _ = regression()
    wrapper = wrap_estimator(KMeans, "kmeans")
    options = {"modkwargs": {"n_clusters": 3, "n_init": 2, "random_state": 0}}
    artifact = train(fit_task(wrapper, x, None, validation=0.2, seed=5, **options))
    got = artifact.metrics["validation"]
    assert got["scoring"] == "score" and got["rows"] == 16
    model = KMeans(n_clusters=3, n_init=2, random_state=0)
    assert got["score"] == pytest.approx(expected(model, x, None, 0.2, 5))


def test_train_records_a_scorer_error_and_still_finishes():
    x, y = classes()
    wrapper = wrap_estimator(LogisticRegression, "logreg")
    artifact = train(fit_task(wrapper, x, y, validation=0.2, seed=0, scoring="roc_auc"))
    got = artifact.metrics["validation"]
    assert got["score"] is None and got["error"].startswith("ValueError")
    assert wrapper.get_serializer().loads(artifact.blob).predict(x).shape == (len(x),)
    # A model without score and no scorer: checked_scorable refuses it at request time, but a
    # task that reaches train anyway records the error too.
    assert not hasattr(IsolationForest(), "score")
    iso = wrap_estimator(IsolationForest, "iso")
    artifact = train(fit_task(iso, x, None, validation=0.2, seed=0, modkwargs={"random_state": 0}))
    assert artifact.metrics["validation"]["score"] is None
    assert artifact.metrics["validation"]["error"].startswith("AttributeError")


class Recording(JoblibSerializer):
    """Joblib, remembering the rows each verify was given."""

    name = "joblib"
    verified: ClassVar[list[list[int]]] = []

    def verify(self, model: Any, blob: bytes, sample: Any) -> None:
        self.verified.append(list(sample.index))


def test_train_verifies_and_describes_on_the_fitted_rows():
    x, y = classes()
    seen: list[int] = []
    Recording.verified.clear()

    class Counting(ModelWrapper):
        name = "counting"
        serializer = Recording()

        def make_model(self, **modkwargs):
            return LogisticRegression()

        def metadata(self, model, x, y=None):
            seen.append(len(x))
            return {"rows": len(x)}

    artifact = train(fit_task(Counting(), x, y, validation=0.2, seed=0))
    x_fit, *_ = holdout(x, y, 0.2, 0, stratify=True)
    assert Recording.verified == [list(x_fit.index)]
    assert seen == [len(x_fit)] and artifact.metadata["user"] == {"rows": len(x_fit)}
    assert artifact.metadata["validation_rows"] == {"fitted": 72, "held_out": 18}
    train(fit_task(Counting(), x, y))
    assert Recording.verified[1] == list(x.index)


# -- prequential ----------------------------------------------------------------------------


def updating(estimator, x, y, x_new, y_new, scoring=None, **modkwargs):
    wrapper = wrap_estimator(estimator, "u", update="partial_fit")
    first = train(fit_task(wrapper, x, y, modkwargs=modkwargs))
    base = wrapper.get_serializer().loads(first.blob)
    expected_score = score(base, x_new, y_new, scoring)
    own = base.score(x_new, y_new) if scoring is None else get_scorer(scoring)(base, x_new, y_new)
    task = TrainingTask(
        wrapper, x_new, y_new, base_blob=first.blob, prequential=True, scoring=scoring
    )
    updated = train(task)
    return updated, own, expected_score, base


@pytest.mark.parametrize(
    ("estimator", "scoring", "modkwargs"),
    [
        (SGDRegressor, None, {"random_state": 0}),
        (SGDRegressor, "r2", {"random_state": 0}),
        (SGDClassifier, None, {"random_state": 0}),
        (SGDClassifier, "balanced_accuracy", {"random_state": 0}),
    ],
)
def test_prequential_scores_the_base_before_it_learns(estimator, scoring, modkwargs):
    if estimator is SGDRegressor:
        x, y = regression(rows=120)
    else:
        x, y = classes(rows=120)
    old, new = slice(0, 80), slice(80, 120)
    updated, own, _, base = updating(
        estimator, x.iloc[old], y.iloc[old], x.iloc[new], y.iloc[new], scoring, **modkwargs
    )
    got = updated.metrics["prequential"]
    assert got == {"score": pytest.approx(own), "scoring": scoring or "score", "rows": 40}
    # Not the updated model's score on the same rows.
    after = wrap_estimator(estimator, "u").get_serializer().loads(updated.blob)
    assert not np.allclose(after.coef_, base.coef_)
    assert "validation" not in updated.metrics


def test_prequential_multinomial_nb():
    rng = np.random.default_rng(4)
    x = pd.DataFrame(rng.integers(0, 5, size=(100, 4)), columns=list("abcd"))
    y = pd.Series((x["a"] > x["b"]).astype(int))
    updated, own, _, _ = updating(MultinomialNB, x.iloc[:60], y.iloc[:60], x.iloc[60:], y.iloc[60:])
    assert updated.metrics["prequential"]["score"] == pytest.approx(own)


def test_prequential_off_or_without_y_records_nothing():
    x, y = regression()
    wrapper = wrap_estimator(SGDRegressor, "sgd", update="partial_fit")
    first = train(fit_task(wrapper, x, y))
    off = train(TrainingTask(wrapper, x, y, base_blob=first.blob))
    assert off.metrics == {}
    assert set(off.metadata) == {"training_seconds", "serialized_bytes", "user"}
    # Without y there is nothing to score prequentially.
    mb = wrap_estimator(MiniBatchKMeans, "mb", update="partial_fit")
    base = train(fit_task(mb, x, None, modkwargs={"n_clusters": 2, "n_init": 1}))
    no_y = train(TrainingTask(mb, x, None, base_blob=base.blob, prequential=True))
    assert no_y.metrics == {}


def test_prequential_records_a_scorer_error():
    x, y = regression()
    wrapper = wrap_estimator(SGDRegressor, "sgd", update="partial_fit")
    first = train(fit_task(wrapper, x, y))
    task = TrainingTask(wrapper, x, y, base_blob=first.blob, prequential=True, scoring="accuracy")
    got = train(task).metrics["prequential"]
    assert got["score"] is None and got["scoring"] == "accuracy" and "Error" in got["error"]


# -- travel ---------------------------------------------------------------------------------


def test_task_with_validation_travels_to_a_process():
    x, y = classes()
    wrapper = wrap_estimator(LogisticRegression, "logreg")
    task = fit_task(wrapper, x, y, validation=0.3, seed=seed_of("key"), scoring="accuracy")
    with ProcessPoolExecutor(max_workers=1) as pool:
        there = pool.submit(train, task).result(timeout=120)
    here = train(task)
    assert there.metrics == here.metrics
    assert there.metrics["validation"]["score"] == pytest.approx(
        expected(LogisticRegression(), x, y, 0.3, seed_of("key"), "accuracy")
    )
