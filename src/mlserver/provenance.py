"""What a version records about its training (rows, features, targets, the libraries it was
fitted with), and the skew between those libraries and the ones serving it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from mlserver.frames.schema import Schema

__all__ = ["DEFAULT_TARGET", "UNKNOWN", "library_skew", "training_metadata"]

#: The name of a target given without one (a 1-d y), and of a 1-d output.
DEFAULT_TARGET = "y"
#: A library version an imported artifact does not declare: no skew can be told.
UNKNOWN = "unknown"


def training_metadata(
    x: pd.DataFrame,
    y: pd.Series | pd.DataFrame | None,
    schema: Schema,
    libraries: Mapping[str, str],
) -> dict[str, Any]:
    """The metadata stored with a version trained on `x` and `y` with `libraries`."""
    if y is None:
        targets: list[Any] = []
    elif isinstance(y, pd.Series):
        targets = [DEFAULT_TARGET if y.name is None else y.name]
    else:
        targets = list(y.columns)
    return {
        "rows": len(x),
        "n_features": x.shape[1],
        "features": schema.to_json(),
        "targets": targets,
        "libraries": dict(libraries),
    }


def library_skew(
    trained: Mapping[str, str], serving: Mapping[str, str], libraries: Iterable[str]
) -> list[str]:
    """A warning for each of `libraries` whose major.minor differs between training and now."""
    found = []
    for library in libraries:
        then, now = trained.get(library), serving.get(library)
        if then and now and then != UNKNOWN and _major_minor(then) != _major_minor(now):
            found.append(f"trained with {library} {then}, served with {library} {now}")
    return found


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
