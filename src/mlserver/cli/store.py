"""The store URL: opened and checked once at start-up, and printed without credentials."""

from __future__ import annotations

from pathlib import Path

from mlserver.config import Settings
from mlserver.errors import ConfigurationError, StoreError
from mlserver.store import SQLStore

__all__ = ["check_file", "open_store", "public_url"]


def public_url(url: str) -> str:
    """`url` without credentials (user, password) or query, safe to print and log."""
    scheme, separator, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    if separator and not scheme.startswith("sqlite") and "@" in rest:
        # NOTE: the last "@" ends the credentials even when a raw password holds "/" or "@".
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{separator}{rest}"


def open_store(url: str, settings: Settings) -> SQLStore:
    """The store at `url`, pinged, so a bad one fails at start-up with one line."""
    shown = public_url(url)
    # ConfigurationError for a bad URL; opens nothing yet
    store = SQLStore(url, timeout=settings.database_timeout_seconds)
    try:
        store.ping()  # NOTE: fail at start-up with one line, not at the first request
    except StoreError as exc:
        store.close()
        cause = exc.__cause__
        detail = " ".join(str(cause).split()) if cause else str(exc)
        raise ConfigurationError(f"store {shown} is not usable: {detail}") from exc
    return store


def check_file(url: str) -> None:
    """A SQLite file that is not there is a typo: refuse it instead of creating it."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():
            raise ConfigurationError(f"store {public_url(url)}: no such file {str(path)!r}")
