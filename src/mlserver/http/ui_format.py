"""How the dashboard's pages show values: times, durations, latencies, sizes and JSON (the
Jinja2 filters of its templates)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

__all__ = ["FILTERS", "NONE"]

#: What a page shows for a value that is not there.
NONE = "\N{EN DASH}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return NONE
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(moment: datetime | None) -> str:
    """A table's time: month, day and time of day in UTC (the full time is its title)."""
    if moment is None:
        return NONE
    return moment.astimezone(timezone.utc).strftime("%m-%d %H:%M:%S")


def _elapsed(moment: datetime | None) -> str:
    if moment is None:
        return NONE
    return _duration((datetime.now(timezone.utc) - moment).total_seconds())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _size(count: int | None) -> str:
    if count is None:
        return NONE
    size = float(count)
    if size < 1024:
        return f"{count} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


#: The filters, by the names the templates use.
FILTERS = {
    "when": _when,
    "short": _short,
    "elapsed": _elapsed,
    "duration": _duration,
    "latency": _latency,
    "size": _size,
    "pretty": _pretty,
    "percent": lambda share: f"{share * 100:.1f} %",
}
