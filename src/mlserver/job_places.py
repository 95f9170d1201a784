"""What a job's bookkeeping hands around: a reserved place in the queue, and the outcome
told to observers once a job is recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["JobOutcome", "Place"]


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job, told to `Jobs.observers` (e.g. metrics) once it is recorded."""

    model: str
    kind: str  # "fit" or "update"
    #: "finished", "failed", "timed_out", "cancelled", or "discarded" (its key was deleted
    #: meanwhile)
    outcome: str
    training_seconds: float | None = None  # of a finished job


class Place:
    """A reserved place in the queue; `close` gives it back (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def take(self) -> bool:
        """Hand the place to the job it was reserved for (True once); close is then a no-op."""
        held, self._release = self._release is not None, None
        return held
