"""Validation and prequential scores as the training step computes them: equal to what
scikit-learn finds on the same rows, deterministic per key, stratified for classifiers,
recorded (not raised) when a scorer fails, and the request-time refusals."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor
from sklearn.metrics import get_scorer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlserver import wrap_estimator
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
from mlserver.serializers import JoblibSerializer
from mlserver.training import TrainingTask, train
from support import classification, regression


def _task(estimator, x, y, **fields) -> TrainingTask:
    update = {"update": "partial_fit"} if hasattr(estimator, "partial_fit") else {}
    wrapper = wrap_estimator(type(estimator), "m", **update)
    return TrainingTask(wrapper, x, y, model=estimator, **fields)


def test_a_validation_score_is_what_scikit_learn_finds_on_the_same_held_out_rows():
    x, y = classification(rows=120)
    seed = seed_of("some-key")
    artifact = train(_task(LogisticRegression(), x, y, validation=0.25, scoring="f1", seed=seed))
    x_fit, x_held, y_fit, y_held = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    expected = get_scorer("f1")(LogisticRegression().fit(x_fit, y_fit), x_held, y_held)
    assert artifact.metrics == {"validation": {"score": expected, "scoring": "f1", "rows": 30}}


def test_the_model_is_fitted_on_the_other_rows_only():
    x, y = regression(rows=40)
    artifact = train(_task(LinearRegression(), x, y, validation=0.5, seed=7))
    fitted = JoblibSerializer().loads(artifact.blob)
    x_fit, _, y_fit, _ = train_test_split(x, y, test_size=0.5, random_state=7)
    assert np.array_equal(fitted.coef_, LinearRegression().fit(x_fit, y_fit).coef_)
    assert artifact.metrics["validation"]["scoring"] == "score"


def test_the_split_is_the_same_for_the_same_seed_and_stratified_for_classifiers():
    x, y = classification(rows=200)
    first = holdout(x, y, 0.2, seed_of("k"), stratify=True)
    again = holdout(x, y, 0.2, seed_of("k"), stratify=True)
    other = holdout(x, y, 0.2, seed_of("other"), stratify=True)
    assert first[2].index.equals(again[2].index)
    assert not first[2].index.equals(other[2].index)
    held = first[3]
    assert abs(held.mean() - y.mean()) <= 1 / len(held)  # the class shares of y, to a row
    assert len(first[0]) + len(held) == len(x)
    assert first[2].index.intersection(first[0].index).empty


def test_a_class_with_one_row_falls_back_to_a_plain_split():
    x, y = classification(rows=30)
    y = y.copy()
    y.iloc[0] = 7  # a class of one row cannot be stratified
    x_fit, y_fit, x_held, y_held = holdout(x, y, 0.3, 1, stratify=True)
    assert (len(x_fit), len(y_fit), len(x_held), len(y_held)) == (21, 21, 9, 9)


def test_a_clusterer_is_scored_without_y():
    x, _ = classification(rows=60)
    artifact = train(
        _task(KMeans(n_clusters=2, n_init=1, random_state=0), x, None, validation=0.5, seed=3)
    )
    x_fit, x_held = train_test_split(x, test_size=0.5, random_state=3)
    model = KMeans(n_clusters=2, n_init=1, random_state=0).fit(x_fit)
    assert artifact.metrics["validation"]["score"] == model.score(x_held)


def test_a_pipeline_is_scored_as_a_whole():
    x, y = classification(rows=80)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    wrapper = wrap_estimator(LogisticRegression, "m")
    task = TrainingTask(wrapper, x, y, model=pipeline, validation=0.25, seed=5)
    metrics = train(task).metrics["validation"]
    x_fit, x_held, y_fit, y_held = train_test_split(
        x, y, test_size=0.25, random_state=5, stratify=y
    )
    expected = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_fit, y_fit)
    assert metrics["score"] == expected.score(x_held, y_held)


def test_a_scorer_that_fails_is_recorded_and_the_version_still_trains():
    x, y = regression(rows=40)
    artifact = train(_task(LinearRegression(), x, y, validation=0.25, scoring="roc_auc"))
    validation = artifact.metrics["validation"]
    assert validation["score"] is None and validation["scoring"] == "roc_auc"
    assert "Error" in validation["error"]
    assert artifact.blob


def test_a_non_finite_score_is_recorded_as_none():
    class Nan(LinearRegression):
        def score(self, x, y=None, sample_weight=None):
            return float("nan")

    x, y = regression(rows=20)
    found = score(Nan().fit(x, y), x, y, None)
    assert found["score"] is None and "finite" in found["error"]


def test_a_prequential_score_is_the_bases_on_the_new_rows_before_it_learns():
    x, y = regression(rows=60)
    base = SGDRegressor(random_state=0).fit(x, y)
    blob = JoblibSerializer().dumps(base)
    new_x, new_y = regression(rows=25, seed=4)
    expected = base.score(new_x, new_y)
    task = _task(SGDRegressor(), new_x, new_y, base_blob=blob, prequential=True)
    artifact = train(task)
    assert artifact.metrics == {"prequential": {"score": expected, "scoring": "score", "rows": 25}}
    updated = JoblibSerializer().loads(artifact.blob)
    assert not np.array_equal(updated.coef_, base.coef_)  # and then it learnt from them


def test_without_scores_asked_the_metrics_stay_empty():
    x, y = regression(rows=20)
    assert train(_task(LinearRegression(), x, y)).metrics == {}


def test_a_task_with_validation_travels_to_another_process():
    x, y = classification(rows=60)
    task = _task(LogisticRegression(), x, y, validation=0.25, scoring="accuracy", seed=2)
    with ProcessPoolExecutor(1) as pool:
        travelled = pool.submit(train, task).result(timeout=120)
    assert travelled.metrics == train(task).metrics


@pytest.mark.parametrize("value", [0, 0.51, -0.1, True, "half", float("nan"), [0.2], "0"])
def test_bad_validation_values_are_refused(value):
    with pytest.raises(InvalidPayload) as refused:
        checked_validation(value)
    assert refused.value.parameter == "validation"


def test_validation_reads_numbers_and_their_text():
    assert checked_validation(0.5) == 0.5
    assert checked_validation("0.2") == 0.2
    assert checked_validation(None) is None


def test_an_unknown_scorer_is_refused_with_close_names():
    with pytest.raises(InvalidPayload) as refused:
        checked_scoring("acuracy")
    assert refused.value.parameter == "scoring" and "accuracy" in str(refused.value)
    with pytest.raises(InvalidPayload):
        checked_scoring(3)
    assert checked_scoring("neg_mean_squared_error") == "neg_mean_squared_error"


def test_validation_of_a_model_without_score_needs_a_scorer():
    class NoScore:
        def fit(self, x, y):
            return self

    with pytest.raises(InvalidPayload) as refused:
        checked_scorable(NoScore(), None, 0.2)
    assert refused.value.parameter == "scoring"
    checked_scorable(NoScore(), "r2", 0.2)
    checked_scorable(NoScore(), None, None)


def test_a_validation_needs_two_rows():
    with pytest.raises(InvalidPayload):
        checked_rows(1, 0.5)
    checked_rows(2, 0.5)
    checked_rows(1, None)


def test_seeds_differ_by_key_and_stay_put():
    assert seed_of("a") == seed_of("a") != seed_of("b")
    assert 0 <= seed_of("a") < 2**32
    assert isinstance(pd.Series([seed_of("z")]).iloc[0], np.integer)
