"""Adaptive batching: predicts for the same version and method that wait while its model is
busy are stacked into one model call, and each gets exactly its own rows of the output.

Nothing waits when nothing is queued: a request that finds its model idle runs at once,
alone. Requests that arrive while it runs queue up; when it ends, the first of them leads
the next call with every queued request (up to `max_rows` rows in all), optionally after
waiting `max_delay` seconds for more. Requests are validated (decoded and conformed to the
training schema) before they queue, and a stacked call that fails is run again request by
request, so one request's rows never fail another's. No HTTP here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlserver.frames.rows import Rows

__all__ = ["Batch", "Batches", "split", "stack"]

log = logging.getLogger("mlserver.service")


@dataclass(frozen=True)
class Batch:
    """One model call, as observers see it: how many requests and rows it stacked, and how
    long its requests waited to join it (the longest)."""

    requests: int
    rows: int
    waited: float


class _Waiter:
    __slots__ = ("arrived", "error", "event", "leads", "result", "rows")

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.arrived = time.perf_counter()
        self.event = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _Queue:
    """The requests of one (version, method): whether its model is busy, who waits."""

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[_Waiter] = []


class Batches:
    """Every (version, method) queue of one service."""

    def __init__(self, max_rows: int, max_delay: float = 0.0) -> None:
        #: Most rows one stacked call takes (a request with more runs alone); 0: off.
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.observers: list[Callable[[Batch], None]] = []
        self._lock = threading.Lock()
        self._queues: dict[Any, _Queue] = {}

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    def run(self, key: Any, rows: Rows, call: Callable[[Rows], Any]) -> Any:
        """`call(rows)`'s output for these rows: alone when the model is idle, else stacked
        with the other requests of `key` waiting meanwhile. Raises what `call` raised on
        this request's rows (alone)."""
        me = _Waiter(rows)
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue()
            if queue.busy:
                queue.waiting.append(me)
                batch = None
            else:
                queue.busy = True
                batch = [me]
        try:
            if batch is None:
                me.event.wait()
                if not me.leads:
                    return me.outcome()
                if self.max_delay:
                    time.sleep(self.max_delay)  # let more requests join this call
                with self._lock:
                    batch = self._take(queue)
            self._execute(batch, call)
        finally:
            if batch is not None:
                self._hand_off(key, queue)
        return me.outcome()

    def _take(self, queue: _Queue) -> list[_Waiter]:
        """The waiting requests from the front (the leader first) up to `max_rows` rows."""
        taken, rows = [], 0
        while queue.waiting:
            count = queue.waiting[0].rows.shape[0]
            if taken and rows + count > self.max_rows:
                break
            taken.append(queue.waiting.pop(0))
            rows += count
        return taken

    def _hand_off(self, key: Any, queue: _Queue) -> None:
        """The next waiting request leads the next call; without one the model is idle."""
        with self._lock:
            if queue.waiting:
                leader = queue.waiting[0]
                leader.leads = True
                leader.event.set()
            else:
                queue.busy = False
                if self._queues.get(key) is queue:
                    del self._queues[key]

    def _execute(self, batch: list[_Waiter], call: Callable[[Rows], Any]) -> None:
        started = time.perf_counter()
        waited = max(started - w.arrived for w in batch)
        rows = sum(w.rows.shape[0] for w in batch)
        try:
            if len(batch) == 1:
                _alone(batch[0], call)
            else:
                self._stacked(batch, call)
        finally:
            for waiter in batch[1:]:
                waiter.event.set()
        for observer in list(self.observers):
            try:
                observer(Batch(len(batch), rows, waited))
            except Exception:  # an observer never breaks a predict
                log.exception("event=batch_observer_failed observer=%r", observer)

    def _stacked(self, batch: list[_Waiter], call: Callable[[Rows], Any]) -> None:
        counts = [w.rows.shape[0] for w in batch]
        try:
            output = call(stack([w.rows for w in batch]))
            parts = split(output, counts)
        except Exception:  # e.g. one request's rows the model refuses: each on its own
            parts = None
        if parts is None:
            for waiter in batch:
                _alone(waiter, call)
            return
        for waiter, part in zip(batch, parts, strict=True):
            waiter.result = part


def _alone(waiter: _Waiter, call: Callable[[Rows], Any]) -> None:
    try:
        waiter.result = call(waiter.rows)
    except BaseException as exc:  # re-raised in the request's own thread
        waiter.error = exc


def stack(parts: Sequence[Rows]) -> Rows:
    """Conformed rows of several requests as one: one array, or one frame."""
    first = parts[0]
    if not any(p.framed for p in parts):
        array = np.concatenate([p.array for p in parts], axis=0)
        return Rows(array, first.labels, orient=first.orient, conformed=True)
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    return Rows(frame, orient=first.orient, conformed=True)


def split(output: Any, counts: Sequence[int]) -> list[Any] | None:
    """A stacked call's output cut back into each request's rows; None when it cannot be
    (not one row per input row, or of a kind that has no rows)."""
    total = sum(counts)
    if isinstance(output, pd.DataFrame | pd.Series):
        rows: Any = output.iloc
    elif hasattr(output, "tocsr"):  # scipy's sparse matrices: CSR slices by rows
        rows = output = output.tocsr()
    elif isinstance(output, np.ndarray | list):
        rows = output
    else:
        return None
    if len(counts) == 0 or getattr(output, "ndim", 1) == 0 or _length(output) != total:
        return None
    parts, start = [], 0
    for count in counts:
        parts.append(rows[start : start + count])
        start += count
    return parts


def _length(output: Any) -> int:
    return output.shape[0] if hasattr(output, "shape") else len(output)
