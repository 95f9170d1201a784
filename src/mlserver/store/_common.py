"""What every part of SQLStore shares: stored times, name checks, and the guard that turns
database failures into StoreError."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import peewee

from mlserver.errors import InvalidPayload, StoreError

__all__ = ["guarded", "names", "now"]

T = TypeVar("T")


def now() -> datetime:
    """Stored naive in UTC: SQLite has no time zones and PostgreSQL's `timestamp` keeps none."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def names(model: str, key: str | None = None, alias: str | None = None) -> None:
    """InvalidPayload for a NUL in a model name, key or alias: PostgreSQL text cannot hold
    one, so no backend stores one (and none is ever found)."""
    for value, parameter in ((model, "model"), (key, "model-key"), (alias, "alias")):
        if value is not None and "\x00" in value:
            raise InvalidPayload(f"{parameter} must not contain NUL characters", parameter)


def guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn database failures into StoreError; the message names the failure, not the SQL.

    Each failure (and each blob failing its sha256) is counted by operation, for metrics.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            with self._deadlines.within(self.timeout):
                return method(self, *args, **kwargs)
        except peewee.PeeweeException as exc:
            self._count_error(method.__name__)
            raise StoreError(f"database error in {method.__name__}: {type(exc).__name__}") from exc
        except StoreError:
            self._count_error(method.__name__)
            raise

    return wrapper
