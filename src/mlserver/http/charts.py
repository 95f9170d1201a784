"""The geometry of the dashboard's small SVG charts, computed on the server so the pages need
no JavaScript: a line of scores across versions, and a sparkline of requests over time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Chart", "Point", "line_chart", "sparkline"]


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    value: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: tuple[Point, ...]
    low: float
    high: float

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


_PAD = 24


def line_chart(
    values: Sequence[tuple[str, float]], width: int = 640, height: int = 200
) -> Chart | None:
    """(label, value) pairs, left to right, scaled into the box; None without any value."""
    if not values:
        return None
    numbers = [value for _, value in values]
    low, high = min(numbers), max(numbers)
    spread = (high - low) or 1.0
    step = (width - 2 * _PAD) / max(len(values) - 1, 1)
    points = tuple(
        Point(
            x=_PAD + i * step if len(values) > 1 else width / 2,
            y=height - _PAD - (value - low) / spread * (height - 2 * _PAD),
            label=label,
            value=value,
        )
        for i, (label, value) in enumerate(values)
    )
    return Chart(width, height, points, low, high)


def sparkline(series: Sequence[int], width: int = 150, height: int = 28) -> str:
    """The points of a polyline drawing `series` (e.g. requests per slot) in the box."""
    top = max(series, default=0) or 1
    step = width / max(len(series) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - value / top * (height - 4):.1f}"
        for i, value in enumerate(series)
    )
