"""The last minutes of answered requests per model, for the dashboard's live page: request
rate, p50 and p99 latency, and the share of refusals (4xx) and errors (5xx).

Prometheus histograms are cumulative since start, with buckets too coarse for a ~1 ms
predict; this keeps a ring of 10-second slots, each with counts and a log-spaced latency
histogram (5 % wide buckets) per model. Recording costs a lock and a few increments.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LiveModel", "RecentRequests"]

#: Latencies below this (10 us) share the first bucket.
_FLOOR = 1e-5
#: Each bucket is 5 % wider than the one before: a percentile is known within 5 %.
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
_LAST_BUCKET = 400  # 1e-5 * 1.05**400 is about 3 days


def _bucket(seconds: float) -> int:
    if seconds <= _FLOOR:
        return 0
    return min(int(math.log(seconds / _FLOOR) / _LOG_RATIO) + 1, _LAST_BUCKET)


def _upper(bucket: int) -> float:
    """The upper bound of a bucket: the latency a percentile falling in it reports."""
    return _FLOOR * _RATIO**bucket


class _Tally:
    """One model's answers in one slot."""

    __slots__ = ("client_errors", "count", "latencies", "server_errors")

    def __init__(self) -> None:
        self.count = 0
        self.client_errors = 0
        self.server_errors = 0
        self.latencies: dict[int, int] = {}


@dataclass(frozen=True)
class LiveModel:
    """One model over the window: what the live page shows in one row."""

    model: str
    requests: int
    per_second: float
    p50: float | None
    p99: float | None
    client_error_rate: float
    server_error_rate: float
    #: Requests per slot, oldest first, for a sparkline (the whole window, zeros included).
    series: tuple[int, ...]


class RecentRequests:
    """Answered requests per model over the last `window` seconds, in `slot`-second slots."""

    def __init__(
        self,
        window: float = 300.0,
        slot: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.slot = slot
        self.slots = max(1, round(window / slot))
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        # (slot number, model -> tally), oldest first; slots without requests are absent.
        self._ring: deque[tuple[int, dict[str, _Tally]]] = deque()

    def record(self, model: str, status: int, seconds: float) -> None:
        """Count one answer of `model` with HTTP `status` that took `seconds`."""
        number = int(self._clock() // self.slot)
        bucket = _bucket(seconds)
        with self._lock:
            ring = self._ring
            if not ring or ring[-1][0] != number:
                ring.append((number, {}))
                while ring[0][0] <= number - self.slots:
                    ring.popleft()
            tallies = ring[-1][1]
            tally = tallies.get(model)
            if tally is None:
                tally = tallies[model] = _Tally()
            tally.count += 1
            if status >= 500:
                tally.server_errors += 1
            elif status >= 400:
                tally.client_errors += 1
            tally.latencies[bucket] = tally.latencies.get(bucket, 0) + 1

    def summary(self) -> list[LiveModel]:
        """Each model with answers in the window, by name."""
        now = self._clock()
        newest = int(now // self.slot)
        first = newest - self.slots + 1
        with self._lock:
            ring = [(n, tallies) for n, tallies in self._ring if n >= first]
            merged: dict[str, tuple[list[int], dict[int, int], list[int]]] = {}
            for number, tallies in ring:
                for model, tally in tallies.items():
                    counts, latencies, series = merged.setdefault(
                        model, ([0, 0, 0], {}, [0] * self.slots)
                    )
                    counts[0] += tally.count
                    counts[1] += tally.client_errors
                    counts[2] += tally.server_errors
                    series[number - first] += tally.count
                    for bucket, count in tally.latencies.items():
                        latencies[bucket] = latencies.get(bucket, 0) + count
        # The window covers the time since start when that is shorter.
        span = max(min(self.window, now - self._started), 1e-9)
        found = []
        for model in sorted(merged):
            (count, client, server), latencies, series = merged[model]
            found.append(
                LiveModel(
                    model=model,
                    requests=count,
                    per_second=count / span,
                    p50=_percentile(latencies, count, 0.50),
                    p99=_percentile(latencies, count, 0.99),
                    client_error_rate=client / count,
                    server_error_rate=server / count,
                    series=tuple(series),
                )
            )
        return found


def _percentile(latencies: dict[int, int], count: int, share: float) -> float | None:
    """The upper bound of the bucket holding the `share` quantile (nearest rank)."""
    if not count:
        return None
    rank = max(1, math.ceil(share * count))
    seen = 0
    for bucket in sorted(latencies):
        seen += latencies[bucket]
        if seen >= rank:
            return _upper(bucket)
    return _upper(max(latencies))
