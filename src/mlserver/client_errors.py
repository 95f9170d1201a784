"""What `ModelClient` raises, rooted in mlserver's own errors (the tree is drawn in
`mlserver.client`), and how an HTTP answer or a requests failure becomes one of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from requests.structures import CaseInsensitiveDict

from mlserver.errors import MLServerError

__all__ = [
    "Answer",
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "NotRunning",
    "RequestTooLarge",
    "ServerError",
    "ServerFailure",
    "TrainingFailed",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMedia",
    "WaitTimeout",
    "os_reason",
    "server_error",
]


class ClientError(MLServerError):
    """Root of what `ModelClient` raises: catch this to handle every client-side failure."""


class ConnectionFailed(ClientError):
    """The server gave no answer (refused, unreachable, timed out); `url` names where."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class ServerError(ClientError):
    """The server answered with an error status; its JSON error body is kept whole in `body`."""

    def __init__(
        self,
        status_code: int,
        title: str,
        description: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {title}: {description}")
        self.status_code = status_code
        self.title = title
        self.description = description
        self.body: dict[str, Any] = dict(body or {})
        self.headers: Mapping[str, str] = CaseInsensitiveDict(headers or {})


class BadRequest(ServerError):
    """400: a parameter is missing, malformed or unknown; `parameter` names it when known."""

    @property
    def parameter(self) -> str | None:
        return self.body.get("parameter")


class Unauthorized(ServerError):
    """401: the server wants a token and got none, or one it does not know."""


class Forbidden(ServerError):
    """403: the token is valid but lacks the scope (predict, train, admin) this call needs."""


class NotFound(ServerError):
    """404: the model is not registered, or the model-key, version or alias does not exist."""


class MethodNotAllowed(ServerError):
    """405: the model does not take this verb; `allowed` lists the verbs it does take."""

    @property
    def allowed(self) -> tuple[str, ...]:
        header = self.headers.get("Allow", "")
        return tuple(verb.strip() for verb in header.split(",") if verb.strip())


class Conflict(ServerError):
    """409: the key's state forbids the request (not ready, not servable, a version an alias
    points at, the `served` alias); `status` is the blocking status when there is one."""

    @property
    def status(self) -> str | None:
        return self.body.get("status")


class RequestTooLarge(ServerError):
    """413: the request body is larger than the server accepts; send smaller batches."""


class UnsupportedMedia(ServerError):
    """415: the server did not read the body as JSON."""


class Unprocessable(ServerError):
    """422: well-formed x the model cannot take; `missing`/`unexpected` list column differences."""

    @property
    def missing(self) -> list[Any]:
        return list(self.body.get("missing", []))

    @property
    def unexpected(self) -> list[Any]:
        return list(self.body.get("unexpected", []))


class ServerFailure(ServerError):
    """5xx: a server bug, or its database is unreachable; retrying later may help."""


class TrainingFailed(ClientError):
    """The version waited for ended FAILED; `error` is the server's message, `state` the status."""

    def __init__(self, key: str, state: Mapping[str, Any]) -> None:
        self.key = key
        self.state: dict[str, Any] = dict(state)
        self.version: int | None = self.state.get("version")
        self.error: str = self.state.get("error") or "no error message recorded"
        super().__init__(f"training of model-key {key} version {self.version} failed: {self.error}")


class WaitTimeout(ClientError):
    """Still RUNNING when the wait ran out; training goes on, `state` is the last status seen."""

    def __init__(self, key: str, state: Mapping[str, Any], seconds: float) -> None:
        self.key = key
        self.state: dict[str, Any] = dict(state)
        super().__init__(
            f"model-key {key} version {self.state.get('version')} still "
            f"{self.state.get('status')} after {seconds:g} s; training continues on the server"
        )


class NotRunning(ClientError):
    """`cancel` found the version FINISHED or FAILED: there is no job to cancel; `state` is
    what the server reported."""

    def __init__(self, key: str, state: Mapping[str, Any]) -> None:
        self.key = key
        self.state: dict[str, Any] = dict(state)
        self.version: int | None = self.state.get("version")
        super().__init__(
            f"model-key {key} version {self.version} is {self.state.get('status')}, "
            "not RUNNING: nothing to cancel"
        )


_ERRORS: dict[int, type[ServerError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    415: UnsupportedMedia,
    422: Unprocessable,
}


class Answer(NamedTuple):
    """What `ModelClient` keeps of an HTTP answer."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


def server_error(answer: Answer) -> ServerError:
    """The typed exception for an error answer; tolerates bodies that are not mlserver's JSON."""
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):  # e.g. an HTML page from a proxy in front of the server
        text = answer.content.decode("utf-8", "replace").strip()[:500]
        body = {"title": answer.reason, "description": text}
    cls = _ERRORS.get(answer.status_code)
    if cls is None:
        cls = ServerFailure if answer.status_code >= 500 else ServerError
    return cls(
        answer.status_code,
        str(body.get("title") or answer.reason),
        str(body.get("description") or ""),
        body,
        answer.headers,
    )


def os_reason(exc: BaseException) -> str:
    """The innermost OS-level reason of a requests failure (e.g. "Connection refused")."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__module__ == "builtins" and isinstance(current, OSError):
            return current.strerror or str(current)
        reason = getattr(current, "reason", None)
        pending.extend([current.__cause__, current.__context__])
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return str(exc)
