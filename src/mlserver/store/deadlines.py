"""Deadlines for a store's database calls, kept by a thread that breaks a call's connection
when its deadline passes (what no libpq timeout can do for a server that never answers)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from mlserver.errors import StoreError

__all__ = ["Deadlines"]


class _Call:
    __slots__ = ("broken", "conn", "deadline")

    def __init__(self, deadline: float, conn: Any) -> None:
        self.deadline = deadline
        self.conn = conn
        self.broken = False


class Deadlines:
    """Per-thread deadlines of a store's database calls, kept by a thread of its own that
    breaks the connection of a call still waiting when its deadline passes.

    NOTE: `statement_timeout` only stops what the server runs, and TCP keepalives and
    `tcp_user_timeout` only notice a peer whose kernel stopped answering: a server, proxy or
    pooler that keeps the connection open and never replies passes all three, and libpq
    waits for its answer forever. Shutting the socket down makes that wait end at once, with
    an error, and the pool discards the connection.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Condition()
        self._calls: dict[int, _Call] = {}
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None
        #: Bumped by `close`: the thread of an older generation ends.
        self._generation = 0

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """The database calls of this block, on this thread, have `seconds` in all; an inner
        block keeps the outer deadline."""
        if getattr(self._local, "deadline", None) is not None:
            yield
            return
        self._local.deadline = time.monotonic() + seconds
        self._local.seconds = seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def extend(self, seconds: float) -> None:
        """Give the current block `seconds` more (a blob takes time to travel)."""
        if getattr(self._local, "deadline", None) is not None and seconds > 0:
            self._local.deadline += seconds
            self._local.seconds += seconds

    def remaining(self) -> float | None:
        deadline = getattr(self._local, "deadline", None)
        return None if deadline is None else deadline - time.monotonic()

    def timed_out(self) -> StoreError:
        seconds = getattr(self._local, "seconds", 0.0)
        return StoreError(
            f"the database did not answer within {seconds:.3g} s (database_timeout_seconds)"
        )

    def check(self) -> None:
        """StoreError if this thread's deadline has passed (e.g. while it waited for a lock)."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise self.timed_out()

    @contextlib.contextmanager
    def watching(self, conn: Any) -> Iterator[None]:
        """Break `conn` if this block outlives the thread's deadline, and then raise
        StoreError; without a deadline the block is not watched."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            yield
            return
        call = _Call(deadline, conn)
        with self._lock:
            self._calls[id(call)] = call
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._generation,),
                    name="mlserver-db-deadlines",
                    daemon=True,
                )
                self._thread.start()
            if deadline < self._wake_at:
                self._lock.notify()
        try:
            yield
        except Exception as exc:
            if call.broken:
                raise self.timed_out() from exc
            raise
        finally:
            with self._lock:  # once removed, the call can no longer be broken
                self._calls.pop(id(call), None)
        if call.broken:  # it ended in the same instant its deadline passed
            raise self.timed_out()

    def _run(self, generation: int) -> None:
        with self._lock:
            while generation == self._generation:
                now = time.monotonic()
                waiting = []
                for call in self._calls.values():
                    if call.broken:
                        continue
                    if call.deadline <= now:
                        call.broken = True
                        break_connection(call.conn)
                    else:
                        waiting.append(call.deadline)
                self._wake_at = min(waiting, default=float("inf"))
                self._lock.wait(None if not waiting else self._wake_at - now)

    def close(self) -> None:
        """End the thread; a later call starts a new one."""
        with self._lock:
            self._generation += 1
            self._thread = None
            self._wake_at = float("inf")
            self._lock.notify_all()


def break_connection(conn: Any) -> None:
    """Shut a connection's socket down (never close its descriptor, which libpq owns): its
    blocked read returns and the driver reports the connection lost."""
    if getattr(conn, "closed", 0):
        return
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except OSError:  # the descriptor is gone: nothing left to break
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already disconnected
        pass
    finally:
        sock.close()
