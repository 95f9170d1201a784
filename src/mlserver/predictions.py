"""Predictions: a model's output shaped into rows named after what they hold, answered in
the orient and form x came in."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from mlserver.errors import UnprocessableData
from mlserver.frames.encode import dumps, encode_arrow_rows, encode_rows
from mlserver.frames.rows import Rows
from mlserver.provenance import DEFAULT_TARGET

__all__ = ["Prediction", "model_output"]


class Prediction:
    """Predictions for x's rows, to answer in the orient and form x came in."""

    def __init__(
        self,
        key: str,
        version: int,
        rows: Rows,
        warnings: tuple[str, ...] = (),
        method: str = "predict",
    ) -> None:
        self.key = key
        self.version = version
        #: The method that made the answer (the model's only one when none was asked for).
        self.method = method
        self.warnings = warnings
        #: The output, labelled by x's rows and carrying x's orient and form.
        self.rows = rows

    @property
    def orient(self) -> str:
        return self.rows.orient

    def arrow(self) -> bytes:
        """The answer as an Arrow IPC stream, x's index kept."""
        return encode_arrow_rows(self.rows)

    @functools.cached_property
    def y(self) -> Any:
        """The JSON answer: text when x came as text, else the value, in x's orient."""
        value = encode_rows(self.rows, self.rows.orient)
        if self.rows.as_string:
            return dumps(value).decode()
        return value


def model_output(
    raw: Any,
    x: Rows,
    model: Any,
    method: str,
    targets: tuple[Any, ...],
    max_output_cells: int,
) -> Rows:
    """A method's output on `x` as Rows: a frame (when the wrapper gave one) or a 2-d array
    with one name per column, labelled by x's rows. Sparse output (OneHotEncoder's default)
    is made dense up to `max_output_cells`."""
    rows = x.shape[0]
    if isinstance(raw, pd.DataFrame) and len(raw) == rows:
        labels = pd.RangeIndex(len(raw)) if x.index is None else x.index
        return Rows(raw.set_axis(labels, axis=0), orient=x.orient, as_string=x.as_string)
    if _is_sparse(raw):
        cells = raw.shape[0] * raw.shape[1]
        if cells > max_output_cells:
            raise UnprocessableData(
                f"the model returned sparse output of {raw.shape[0]} x {raw.shape[1]}; "
                f"this server answers at most {max_output_cells} cells "
                "(max_output_cells): send fewer rows"
            )
        raw = raw.toarray()
    values = np.asarray(raw.to_numpy() if isinstance(raw, pd.Series) else raw)
    if values.ndim not in (1, 2) or len(values) != rows:
        raise UnprocessableData(
            f"the model returned output of shape {values.shape} for {rows} rows of x"
        )
    names = _output_names(model, method, values.ndim, targets)
    if values.ndim == 1:
        values, names = values[:, None], [names[0] if len(names) == 1 else DEFAULT_TARGET]
    elif len(names) != values.shape[1]:
        names = list(range(values.shape[1]))
    return Rows(values, names, x.index, orient=x.orient, as_string=x.as_string)


def _output_names(model: Any, method: str, ndim: int, targets: tuple[Any, ...]) -> list[Any]:
    """Names of a method's output columns: the training targets for predict, class labels
    for probabilities and scores, the transformer's feature names for transform."""
    if method == "predict":
        return list(targets)
    classes = getattr(model, "classes_", None)
    if method in ("predict_proba", "decision_function") and classes is not None:
        labels = np.asarray(classes).tolist()
        # A binary decision_function is 1-d: the score of the positive (last) class.
        return labels[-1:] if ndim == 1 else labels
    names = getattr(model, "get_feature_names_out", None)
    if method == "transform" and callable(names):
        try:
            return np.asarray(names()).tolist()
        except (AttributeError, ValueError, TypeError):  # not every transformer can name them
            return []
    return []


def _is_sparse(value: Any) -> bool:
    # NOTE: scipy is a dependency of scikit-learn; checked by attribute so no import is paid.
    return hasattr(value, "toarray") and hasattr(value, "nnz") and hasattr(value, "shape")
