"""Whether a version that finishes becomes `served`: the rule of `Store.finish`, on plain
values (the store decides it inside the finishing transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlserver.errors import InvalidPayload
from mlserver.store.base import PROMOTE

__all__ = ["check_promote", "decide"]

_CANDIDATE = "a candidate; move the served alias to promote it"


def check_promote(promote: str, keep_versions: int) -> None:
    """InvalidPayload naming the parameter, before anything is written."""
    if promote not in PROMOTE:
        raise InvalidPayload(
            f"promote must be one of {', '.join(PROMOTE)}, got {promote!r}", "promote"
        )
    if isinstance(keep_versions, bool) or not isinstance(keep_versions, int) or keep_versions < 0:
        raise InvalidPayload(
            f"keep_versions must be a whole number >= 0, got {keep_versions!r}", "keep_versions"
        )


def _score(metrics: Mapping[str, Any]) -> tuple[float | None, str | None]:
    validation = metrics.get("validation")
    if not isinstance(validation, Mapping):
        return None, None
    score = validation.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        score = None
    return score, validation.get("scoring")


def decide(
    promote: str,
    metrics: Mapping[str, Any],
    served: tuple[int, Mapping[str, Any]] | None,
) -> tuple[bool, str]:
    """(promoted, reason) for a version with `metrics`, `served` being (number, metrics) of
    the version `served` points at now, or None when the key has none yet."""
    if served is None:
        return True, "the first finished version of this key is always served"
    if promote == "always":
        return True, "promote=always"
    if promote == "never":
        return False, f"promote=never: {_CANDIDATE}"
    number, theirs = served
    mine, scoring = _score(metrics)
    other, other_scoring = _score(theirs)
    if mine is None or other is None:
        return True, "no validation score to compare: promoted as with always"
    if scoring != other_scoring:
        return True, (
            f"validation scored with {scoring!r}, served version {number}'s with "
            f"{other_scoring!r}: nothing to compare, promoted as with always"
        )
    if mine >= other:
        return True, f"validation score {mine:g} >= served version {number}'s {other:g} ({scoring})"
    return False, (
        f"validation score {mine:g} < served version {number}'s {other:g} ({scoring}): {_CANDIDATE}"
    )
