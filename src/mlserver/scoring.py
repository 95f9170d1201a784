"""Scores of a version: on rows held out from its fit (validation) and, for an update, of its
base on the new rows before it learns from them (prequential). The request-time checks are
here too, so a PUT that could never be scored is a 400 before anything is stored."""

from __future__ import annotations

import difflib
import hashlib
import math
from typing import Any

import pandas as pd

from mlserver.errors import InvalidPayload

__all__ = [
    "OWN_SCORE",
    "checked_rows",
    "checked_scorable",
    "checked_scoring",
    "checked_validation",
    "holdout",
    "score",
    "seed_of",
]

#: The `scoring` recorded for the estimator's own `score` method.
OWN_SCORE = "score"
#: Largest share of the rows a PUT may hold out.
MAX_VALIDATION = 0.5
_MAX_ERROR = 500


def checked_validation(value: Any) -> float | None:
    """The share of rows to hold out: a number in (0, 0.5] (its text too, as a query string
    carries it); None when not given."""
    if value is None:
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
        or not 0 < number <= MAX_VALIDATION
    ):
        raise InvalidPayload(
            f"validation must be a number in (0, {MAX_VALIDATION}], the share of rows held "
            f"out; got {value!r}",
            "validation",
        )
    return float(number)


def checked_scoring(value: Any) -> str | None:
    """A scikit-learn scorer name (None: the estimator's own score)."""
    if value is None:
        return None
    from sklearn.metrics import get_scorer_names

    names = get_scorer_names()
    if isinstance(value, str) and value in names:
        return value
    if not isinstance(value, str):
        raise InvalidPayload(f"scoring must be a scorer name, got {value!r}", "scoring")
    close = difflib.get_close_matches(value, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InvalidPayload(
        f"unknown scoring {value!r}: not a scikit-learn scorer name (see "
        f"sklearn.metrics.get_scorer_names()){hint}",
        "scoring",
    )


def checked_scorable(model: Any, scoring: str | None, validation: float | None) -> None:
    """Refuse a validation that could never be scored: no scorer and no `score` method."""
    if validation is not None and scoring is None and not callable(getattr(model, "score", None)):
        raise InvalidPayload(
            f"{type(model).__name__} has no score method: give scoring with validation",
            "scoring",
        )


def checked_rows(rows: int, validation: float | None) -> None:
    """Both sides of the split need a row: at least two rows with a validation."""
    if validation is not None and rows < 2:
        raise InvalidPayload(
            f"validation needs at least 2 rows (one to fit, one to score); x has {rows}",
            "validation",
        )


def seed_of(key: str) -> int:
    """The held-out split's seed for a key: the same rows are held out on every server."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def holdout(
    x: pd.DataFrame,
    y: pd.Series | pd.DataFrame | None,
    fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[pd.DataFrame, Any, pd.DataFrame, Any]:
    """(x_fit, y_fit, x_held, y_held): `fraction` of the rows held out, the same ones for
    the same seed; stratified by a 1-d y when asked and possible (each class needs two rows),
    else a plain shuffled split."""
    from sklearn.model_selection import train_test_split

    arrays = [x] if y is None else [x, y]
    by = None
    if stratify and y is not None:
        by = y.iloc[:, 0] if isinstance(y, pd.DataFrame) and y.shape[1] == 1 else y
        if isinstance(by, pd.DataFrame) or by.value_counts().min() < 2:
            by = None
    try:
        parts = train_test_split(*arrays, test_size=fraction, random_state=seed, stratify=by)
    except ValueError:  # too few rows of a class for its share of the held-out rows
        parts = train_test_split(*arrays, test_size=fraction, random_state=seed)
    if y is None:
        return parts[0], None, parts[1], None
    return parts[0], parts[2], parts[1], parts[3]


def score(model: Any, x: pd.DataFrame, y: Any, scoring: str | None) -> dict[str, Any]:
    """`{"score", "scoring", "rows"}` of a fitted model on rows; a scorer that fails or a
    score that is not finite gives `"score": None` and the `"error"`, never an exception."""
    found: dict[str, Any] = {"score": None, "scoring": scoring or OWN_SCORE, "rows": len(x)}
    try:
        if scoring is None:
            value = model.score(x, y)
        else:
            from sklearn.metrics import get_scorer

            value = get_scorer(scoring)(model, x, y)
        value = float(value)
    except Exception as exc:  # whatever the scorer or the model raises is the score's error
        text = f"{type(exc).__name__}: {exc}"
        found["error"] = text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
        return found
    if not math.isfinite(value):
        found["error"] = f"the score is not a finite number: {value!r}"
        return found
    found["score"] = value
    return found
