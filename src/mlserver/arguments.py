"""Checks of a request's plain arguments (model-key, kwargs, flags), in domain words: each
refusal is an InvalidPayload naming its parameter. The orient is checked in
`frames.orients.orient_of`, next to the orients it names."""

from __future__ import annotations

from typing import Any

import orjson

from mlserver.errors import InvalidPayload

__all__ = ["checked_name", "flag", "kwargs_object", "model_key"]


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
