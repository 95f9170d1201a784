"""Checks of a request's plain arguments (model-key, kwargs, flags), in domain words: each
refusal is an InvalidPayload naming its parameter. The orient is checked in
`frames.orients.orient_of`, next to the orients it names."""

from __future__ import annotations

import re
from typing import Any

import orjson

from mlserver.errors import InvalidPayload
from mlserver.store.base import PROMOTE, Status

__all__ = [
    "alias_name",
    "checked_name",
    "flag",
    "kwargs_object",
    "model_key",
    "promote_policy",
    "status_filter",
    "whole_number",
]

#: The largest number a version, page size or cursor may be: a 32-bit database integer.
_LARGEST = 2**31 - 1
#: What model names may be (mlserver.registry), and so alias names too.
_URL_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


def model_key(key: Any) -> str:
    if key is None or key == "":
        raise InvalidPayload("missing parameter 'model-key'", "model-key")
    if not isinstance(key, str):
        raise InvalidPayload("model-key must be a string", "model-key")
    if "\x00" in key:
        # NOTE: PostgreSQL text cannot hold NUL; no stored key has one on any backend.
        raise InvalidPayload("model-key must not contain NUL characters", "model-key")
    return key


def checked_name(name: Any) -> str | None:
    """The name a PUT gives its key instead of the data's hash (None: not given)."""
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidPayload("name must be a non-empty string", "name")
    return name


def kwargs_object(value: Any, parameter: str) -> dict[str, Any]:
    """A kwargs object; JSON text of an object is accepted as the original clients sent it."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidPayload(f"{parameter} must be a JSON object", parameter) from None
    if not isinstance(value, dict):
        raise InvalidPayload(f"{parameter} must be a JSON object", parameter)
    return value


def flag(value: Any, parameter: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidPayload(f"{parameter} must be true or false, got {value!r}", parameter)


def promote_policy(value: Any) -> str:
    """When a finished version becomes `served`: always (default), if-better or never."""
    if value is None:
        return "always"
    if not isinstance(value, str) or value not in PROMOTE:
        raise InvalidPayload(
            f"promote must be one of {', '.join(PROMOTE)}, got {value!r}", "promote"
        )
    return value


def whole_number(value: Any, parameter: str, *, minimum: int = 1, maximum: int = _LARGEST) -> int:
    """A positive integer; its decimal text is accepted, as query strings and paths carry it.
    At most what a database integer column holds, unless `maximum` is lower."""
    number = value
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidPayload(f"{parameter} must be an integer, got {value!r}", parameter)
    if number < minimum or number > maximum:
        bound = f"between {minimum} and {maximum}"
        raise InvalidPayload(f"{parameter} must be {bound}, got {number}", parameter)
    return number


def alias_name(value: Any) -> str:
    """An alias name: URL-safe, as model names are."""
    if not isinstance(value, str) or not _URL_SAFE.fullmatch(value):
        raise InvalidPayload(
            f"alias must be 1 to 128 URL-safe characters (letters, digits, '.', '_', '~', "
            "'-'; not first), "
            f"got {value!r}",
            "alias",
        )
    return value


def status_filter(value: Any) -> Status | None:
    """A key listing's status filter (None: every key)."""
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise InvalidPayload(f"status must be one of {names}, got {value!r}", "status") from None
