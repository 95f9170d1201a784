"""The training schema, and conforming a request's rows to it."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlserver.errors import SchemaMismatch
from mlserver.frames.labels import names
from mlserver.frames.limits import check_shape
from mlserver.frames.orients import decode_frame
from mlserver.frames.rows import Rows

__all__ = ["Schema", "mismatch"]


@dataclass(frozen=True)
class Schema:
    """Column labels and dtypes of the training features, stored with every version."""

    columns: tuple[Hashable, ...]
    dtypes: tuple[str, ...]

    @functools.cached_property
    def column_index(self) -> pd.Index:
        """The columns as a ready Index, for the frames of conformed rows.

        PERF: building an Index of strings per request costs more than the rest of a
        one-row decode (pandas 3 backs it with Arrow); one per version does.
        """
        return pd.Index(list(self.columns), dtype=object)

    @functools.cached_property
    def numeric(self) -> bool:
        """All features numeric: such models take one float array."""
        return all(_is_numeric(t) for t in self.dtypes)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Schema:
        return cls(tuple(frame.columns), tuple(str(t) for t in frame.dtypes))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": c, "dtype": t} for c, t in zip(self.columns, self.dtypes, strict=True)]

    @classmethod
    def from_json(cls, fields: Sequence[Mapping[str, Any]]) -> Schema:
        return cls(tuple(f["name"] for f in fields), tuple(f["dtype"] for f in fields))

    def rows(
        self,
        x: Any,
        orient: str,
        *,
        max_rows: int | None = None,
        max_columns: int | None = None,
    ) -> Rows:
        """`x` (as a request gives it, or Rows of a bulk body) decoded and conformed: the
        numeric fast paths where they apply, else a frame in training order and dtypes.

        Raises InvalidPayload (not decodable), UnprocessableData (above `max_rows` or
        `max_columns`, checked before conforming) or SchemaMismatch.
        """
        rows = decode_frame(x, orient, "x", self)
        if max_rows is not None and max_columns is not None:
            check_shape(rows.shape, max_rows, max_columns)
        if rows.conformed:
            return rows
        frame = self.conform(rows.frame, positional=orient == "values")
        return Rows(frame, orient=rows.orient, as_string=rows.as_string, conformed=True)

    def conform(self, frame: pd.DataFrame, positional: bool = False) -> pd.DataFrame:
        """`frame` with the training columns in training order and compatible dtypes.

        `positional` frames carry no column names (orient `values`): they are matched by
        position. Raises SchemaMismatch naming missing/unexpected columns or bad dtypes.
        """
        if positional and len(frame.columns) == len(self.columns):
            frame = frame.set_axis(list(self.columns), axis=1)
        if tuple(frame.columns) != self.columns:
            given = set(frame.columns)
            missing = [c for c in self.columns if c not in given]
            expected = set(self.columns)
            unexpected = [c for c in frame.columns if c not in expected]
            if missing or unexpected:
                raise mismatch(
                    "x does not match the training schema", "columns", missing, unexpected
                )
            if frame.columns.has_duplicates:
                raise SchemaMismatch("x has duplicate column names")
            frame = frame[list(self.columns)]
        return self._cast(frame)

    def _cast(self, frame: pd.DataFrame) -> pd.DataFrame:
        wrong = []
        casts = {}
        for column, trained, given in zip(self.columns, self.dtypes, frame.dtypes, strict=True):
            if str(given) == trained:
                continue
            trained_numeric = _is_numeric(trained)
            if _kind_of(trained) != _kind(given):
                # NOTE: an all-null column parses as float/object; let the model judge it.
                if not frame[column].isna().all():
                    wrong.append(f"{column!r} is {given}, trained as {trained}")
                continue
            if trained_numeric and _lossless(frame[column], trained):
                casts[column] = trained
        if wrong:
            raise SchemaMismatch("x has columns of the wrong type: " + "; ".join(wrong))
        return frame.astype(casts) if casts else frame


def mismatch(
    what: str, noun: str, missing: Sequence[Hashable], unexpected: Sequence[Hashable]
) -> SchemaMismatch:
    """The SchemaMismatch naming what is missing and what is unexpected."""
    parts = []
    if missing:
        parts.append(f"missing {noun} {names(list(missing))}")
    if unexpected:
        parts.append(f"unexpected {noun} {names(list(unexpected))}")
    return SchemaMismatch(
        f"{what}: " + "; ".join(parts),
        missing=[str(c) for c in missing],
        unexpected=[str(c) for c in unexpected],
    )


def _kind(dtype: Any) -> str:
    """What a column holds, as far as a model is concerned: numbers, datetimes, durations or
    text (strings, categories, mixed objects). Columns of another kind than in training are
    refused: a datetime where strings were trained would predict nonsense."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "text"


def _kind_of(dtype: str) -> str:
    """`_kind` of a dtype as stored in a schema; one this pandas cannot read counts as text."""
    try:
        return _kind(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return "text"


def _is_numeric(dtype: str) -> bool:
    try:
        return pd.api.types.is_numeric_dtype(pd.api.types.pandas_dtype(dtype))
    except TypeError:
        return False


def _lossless(column: pd.Series, dtype: str) -> bool:
    try:
        cast = column.astype(dtype)
    except (TypeError, ValueError):
        return False
    return bool((cast == column).all())
