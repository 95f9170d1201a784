"""Whether an ONNX graph answers as its model does: the tolerances, and the comparison
`OnnxSerializer.verify` runs on the training rows before a version is stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ABSOLUTE_TOLERANCE", "RELATIVE_TOLERANCE", "difference", "float32_rows"]

#: Float outputs (probabilities, scores, values, transforms) may differ from scikit-learn's by
#: `ABSOLUTE_TOLERANCE * max(1, largest |value| of that output) + RELATIVE_TOLERANCE * |value|`.
#: NOTE: onnxruntime computes in float32 (about 7 significant digits); scikit-learn in float64
#: on the same float32-rounded rows. Measured over every estimator of `all_estimators()` that
#: exports: probabilities within 6.6e-7, scores, values and transforms within 5.6e-6 of their
#: output's scale.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-4


def float32_rows(rows: pd.DataFrame, inputs: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as the graph sees them: float inputs rounded to float32, dtypes kept."""
    rounded = rows.copy()
    floats = {c for spec in inputs if spec["type"] == "float" for c in spec["columns"]}
    for column in rows.columns:
        if str(column) not in floats:
            continue
        try:
            values = rows[column].to_numpy(dtype=np.float32)
            rounded[column] = pd.Series(values, index=rows.index).astype(rows[column].dtype)
        except (TypeError, ValueError):  # e.g. a nullable column with NA: leave it as it is
            continue
    return rounded


def _dense(values: Any) -> np.ndarray:
    if hasattr(values, "toarray"):  # a scipy sparse matrix: the graph gives it dense
        values = values.toarray()
    if isinstance(values, pd.DataFrame | pd.Series):
        values = values.to_numpy()
    return np.asarray(values)


def difference(expected: Any, got: np.ndarray, *, exact: bool) -> str | None:
    """How the graph's answer differs from the model's, or None when they agree."""
    expected, got = _dense(expected), np.asarray(got)
    rows = len(expected)
    if expected.shape != got.shape:
        if expected.size == got.size and len(got) == rows:
            got = got.reshape(expected.shape)
        else:
            return f"shape {got.shape} instead of {expected.shape}"
    if exact or expected.dtype.kind not in "fc" or got.dtype.kind not in "fc":
        same = expected == got if expected.dtype == got.dtype else _same_labels(expected, got)
        same = np.asarray(same).reshape(rows, -1).all(axis=1)
        if same.all():
            return None
        first = int(np.argmin(same))
        return (
            f"{int((~same).sum())} of {rows} labels differ "
            f"(row {first}: {_item(got[first])!r} instead of {_item(expected[first])!r})"
        )
    expected = expected.astype(np.float64)
    got = got.astype(np.float64)
    nan = np.isnan(expected) | np.isnan(got)
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    tolerance = ABSOLUTE_TOLERANCE * scale + RELATIVE_TOLERANCE * np.abs(expected)
    gap = np.abs(expected - got)
    bad = np.where(nan, np.isnan(expected) != np.isnan(got), gap > tolerance)
    bad = np.asarray(bad).reshape(rows, -1).any(axis=1)
    if not bad.any():
        return None
    return (
        f"{int(bad.sum())} of {rows} rows differ by more than the tolerance (max difference "
        f"{float(np.nanmax(np.where(nan, 0.0, gap))):.3g} on values up to {scale:.3g}; "
        f"allowed {ABSOLUTE_TOLERANCE:g} x max(1, largest value) + {RELATIVE_TOLERANCE:g} x value)"
    )


def _item(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _same_labels(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Element-wise equality of labels whose arrays differ in dtype (int64 vs object, say)."""
    return np.asarray(
        [a == b for a, b in zip(expected.ravel().tolist(), got.ravel().tolist(), strict=True)]
    ).reshape(expected.shape)
