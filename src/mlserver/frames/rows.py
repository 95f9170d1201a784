"""Rows: one value for a table's rows from the decoded body to the model, and from the
model's output to the answer."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from mlserver.frames.labels import axis, default_index

__all__ = ["Rows"]


class Rows:
    """Rows with labelled columns, held as one 2-d array or as a DataFrame, plus the orient
    and form (`as_string`) they came in, so an answer can go back the same way.

    Each form is built from the other only when asked for: the numeric fast paths and Arrow
    bodies give an array a model can take as it is; the general path gives a frame.
    `conformed` says the rows already have the training schema's columns, order and dtypes
    (see `Schema.rows`). Any other input form (named tensors, say) becomes Rows through the
    plain constructor, from an array or a frame, its labels and its index.
    """

    def __init__(
        self,
        data: np.ndarray | pd.DataFrame,
        labels: Sequence[Hashable] | pd.Index | None = None,
        index: pd.Index | None = None,
        *,
        orient: str = "columns",
        as_string: bool = False,
        conformed: bool = False,
    ) -> None:
        """`labels` name an array's columns (a list is typed as `read_json` types labels;
        an Index is taken as it is); `index` its row labels, None standing for 0..n-1. A
        frame brings its own."""
        self.orient = orient
        self.as_string = as_string
        self.conformed = conformed
        self._frame: pd.DataFrame | None = None
        self._array: np.ndarray | None = None
        if isinstance(data, pd.DataFrame):
            self._frame = data
            self.labels: Sequence[Hashable] | pd.Index = data.columns
        else:
            self._array = data
            self.labels = [] if labels is None else labels
        self._index = index

    @property
    def framed(self) -> bool:
        """The rows are held as a DataFrame (else as an array)."""
        return self._array is None

    @property
    def shape(self) -> tuple[int, int]:
        held = self._frame if self._array is None else self._array
        return held.shape  # type: ignore[union-attr,return-value]

    @property
    def index(self) -> pd.Index | None:
        """The row labels; None stands for 0..n-1 (no Index built for it)."""
        if self._array is not None:
            return self._index
        frame = self._frame
        return None if default_index(frame.index) else frame.index  # type: ignore[union-attr]

    @property
    def array(self) -> np.ndarray:
        """The rows as one array: as held, or a frame's values as float64 (what a model's
        array form takes, laid out as pandas holds them)."""
        if self._array is not None:
            return self._array
        return self._frame.to_numpy(dtype=np.float64)  # type: ignore[union-attr]

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            labels = self.labels
            columns = labels if isinstance(labels, pd.Index) else axis(list(labels), "x")
            # NOTE: column-major, as every frame pandas builds itself holds its values:
            # models that use BLAS round by layout, and answers must equal the model's own
            # on a frame of these rows bit for bit.
            self._frame = pd.DataFrame(
                np.asfortranarray(self._array),
                columns=columns,
                index=self._index,
                copy=False,
            )
        return self._frame
