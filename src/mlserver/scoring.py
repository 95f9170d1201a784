"""Validation and prequential scores: the request checks (`checked_*`), the held-out split and
the score itself, in scikit-learn's terms.

A score never fails a job: a scorer that raises or returns a non-finite number gives
`{"score": None, "error": ...}` so the version still finishes and says why it has no score.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from typing import Any

import pandas as pd

from mlserver.errors import InvalidPayload

__all__ = [
    "checked_rows",
    "checked_scorable",
    "checked_scoring",
    "checked_validation",
    "holdout",
    "score",
    "seed_of",
]

#: The largest share of rows a fit may hold out: beyond it the model learns from the minority.
MAX_VALIDATION = 0.5
_MAX_ERROR = 500


def checked_validation(value: Any) -> float | None:
    """The share of rows to hold out, in (0, 0.5]; text is accepted as query strings send it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidPayload(
            f"validation must be a number in (0, {MAX_VALIDATION}], got {value!r}", "validation"
        )
    try:
        share = float(value)
    except ValueError:
        raise InvalidPayload(
            f"validation must be a number in (0, {MAX_VALIDATION}], got {value!r}", "validation"
        ) from None
    if not (0 < share <= MAX_VALIDATION):  # NaN fails this too
        raise InvalidPayload(
            f"validation must be a number in (0, {MAX_VALIDATION}], got {value!r}", "validation"
        )
    return share


def checked_scoring(value: Any) -> str | None:
    """A scikit-learn scorer name (None: the model's own `score`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"scoring must be a scorer name, got {value!r}", "scoring")
    from sklearn.metrics import get_scorer_names

    names = get_scorer_names()
    if value not in names:
        close = difflib.get_close_matches(value, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidPayload(
            f"unknown scoring {value!r}: see sklearn.metrics.get_scorer_names(){hint}", "scoring"
        )
    return value


def checked_scorable(model: Any, scoring: str | None, validation: float | None) -> None:
    """Refuse at request time a validation the model could never score (no `score` method and
    no scorer given), rather than finishing a version whose score is always an error."""
    if validation is None or scoring is not None:
        return
    if not callable(getattr(model, "score", None)):
        raise InvalidPayload(
            f"{type(model).__name__} has no score method: give a scoring name for validation",
            "scoring",
        )


def checked_rows(n_rows: int, validation: float | None) -> None:
    """Both sides of the split need a row: scikit-learn holds out ceil(n * validation)."""
    if validation is None:
        return
    held = math.ceil(n_rows * validation)
    if held < 1 or n_rows - held < 1:
        raise InvalidPayload(
            f"validation {validation} of {n_rows} row(s) leaves no row to fit or to score: "
            "send more rows or no validation",
            "validation",
        )


def seed_of(key: str) -> int:
    """A seed from the key, the same in every process (unlike `hash`), within numpy's range."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big")


def holdout(
    x: pd.DataFrame,
    y: pd.Series | pd.DataFrame | None,
    fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[pd.DataFrame, Any, pd.DataFrame, Any]:
    """(x_fit, y_fit, x_held, y_held): the same rows for the same seed, index and dtypes kept.

    With `stratify` (a classifier) and a 1-d y, each class keeps its share on both sides; when
    that is impossible (a class with one member, fewer held-out rows than classes) the split
    is unstratified rather than refused.
    """
    # NOTE: imported here, as the scorers below: scikit-learn's model_selection and metrics
    # are ~130 modules a server that never scores need not carry (nor its collector scan).
    from sklearn.model_selection import train_test_split

    arrays = [x] if y is None else [x, y]
    labels = _labels(y) if stratify else None
    parts = None
    if labels is not None:
        try:
            parts = train_test_split(
                *arrays, test_size=fraction, random_state=seed, stratify=labels
            )
        except ValueError:
            parts = None
    if parts is None:
        parts = train_test_split(*arrays, test_size=fraction, random_state=seed)
    if y is None:
        x_fit, x_held = parts
        return x_fit, None, x_held, None
    x_fit, x_held, y_fit, y_held = parts
    return x_fit, y_fit, x_held, y_held


def _labels(y: Any) -> Any:
    """The 1-d labels to stratify on, or None (no y, or several target columns)."""
    if isinstance(y, pd.DataFrame):
        return y.iloc[:, 0] if y.shape[1] == 1 else None
    if isinstance(y, pd.Series):
        return y
    return None


def score(model: Any, x: Any, y: Any, scoring: str | None) -> dict[str, Any]:
    """`{"score", "scoring", "rows"}` of `model` on these rows, plus `"error"` when it has no
    score; never raises, so a scorer's failure does not fail the job."""
    result: dict[str, Any] = {"score": None, "scoring": scoring or "score", "rows": len(x)}
    try:
        if scoring is None:
            value = model.score(x) if y is None else model.score(x, y)
        else:
            from sklearn.metrics import get_scorer

            value = get_scorer(scoring)(model, x, y)
        value = float(value)
    except Exception as exc:  # any scorer failure is recorded, not raised
        result["error"] = _bounded(f"{type(exc).__name__}: {exc}")
        return result
    if not math.isfinite(value):
        result["error"] = f"the score is not finite: {value}"
        return result
    result["score"] = value
    return result


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
