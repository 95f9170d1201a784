"""`ModelClient`: fit, predict, update, status and delete over HTTP, the way estimators do.

    with ModelClient("http://127.0.0.1:8080", "logistic") as client:
        key = client.fit(x_train, y_train)        # PUT, then polls GET until training ends
        labels = client.predict(x_test, key)      # POST: a Series aligned to x_test.index

Frames travel as JSON values in orient "split", written with `mlserver.frames.encode_frame`, so
floats keep full float64 precision and the index survives (pandas' `to_json` keeps only 10
significant digits). Every failure is an exception of this tree, rooted in mlserver's own:

MLServerError                   (mlserver.errors)
└── ClientError                 the client could not do what was asked
    ├── ConnectionFailed        no answer: refused, unreachable or timed out (names the URL)
    ├── ServerError             the server answered with an error status (4xx, 5xx)
    │   ├── BadRequest          400: a parameter is missing, malformed or unknown
    │   ├── Unauthorized        401: no valid token (pass `token=`)
    │   ├── Forbidden           403: the token lacks the scope this call needs
    │   ├── NotFound            404: unknown model, or a model-key with no versions
    │   ├── MethodNotAllowed    405: the model does not take that verb (e.g. no update)
    │   ├── Conflict            409: the key is not ready or not servable; `status` says which
    │   ├── RequestTooLarge     413: the body is above the server's limit
    │   ├── UnsupportedMedia    415: the body is not JSON
    │   ├── Unprocessable       422: x does not fit the model (e.g. other columns)
    │   └── ServerFailure       5xx: a bug, or the server's database is unreachable
    ├── TrainingFailed          the version being waited for ended FAILED
    └── WaitTimeout             the version was still RUNNING when the wait ran out
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Any, NamedTuple
from urllib.parse import quote

import orjson
import pandas as pd
import requests
from requests.structures import CaseInsensitiveDict

from mlserver.errors import MLServerError
from mlserver.frames import dumps, encode_frame

__all__ = [
    "DEFAULT_TIMEOUT",
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "MethodNotAllowed",
    "ModelClient",
    "NotFound",
    "RequestTooLarge",
    "ServerError",
    "ServerFailure",
    "TrainingFailed",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMedia",
    "WaitTimeout",
]

#: Seconds each HTTP request may take (connecting, sending, waiting for the answer).
DEFAULT_TIMEOUT = 60.0

# Polling while a version trains: pause a fifth of the time waited so far, so small models
# (milliseconds) are seen at once, the wait overshoots the training by at most ~20 %, and a
# long run costs one request per `_MAX_POLL` seconds.
_MIN_POLL = 0.02
_POLL_FRACTION = 0.2
_MAX_POLL = 1.0
# At most one progress line per this many seconds (plus the first and the last).
_PROGRESS_EVERY = 1.0

_ORIENT = "split"

# ---------------------------------------------------------------------------------------------
# Exceptions


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
    """404: the model is not registered, or the model-key has no versions."""


class MethodNotAllowed(ServerError):
    """405: the model does not take this verb; `allowed` lists the verbs it does take."""

    @property
    def allowed(self) -> tuple[str, ...]:
        header = self.headers.get("Allow", "")
        return tuple(verb.strip() for verb in header.split(",") if verb.strip())


class Conflict(ServerError):
    """409: the key's state forbids the request; `status` is the blocking status."""

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


class _Answer(NamedTuple):
    """What `ModelClient` keeps of an HTTP answer."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


def _server_error(answer: _Answer) -> ServerError:
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


def _reason(exc: BaseException) -> str:
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


# ---------------------------------------------------------------------------------------------
# Frames


def _encode_x(x: pd.DataFrame) -> Any:
    if not isinstance(x, pd.DataFrame):
        raise TypeError(f"x must be a pandas DataFrame, not {type(x).__name__}")
    return encode_frame(x, _ORIENT)


def _encode_y(y: pd.Series | pd.DataFrame) -> Any:
    """y as `to_json(orient="split")` would write it, exactly; a one-column frame goes 1-d."""
    if isinstance(y, pd.DataFrame) and y.shape[1] == 1:
        y = y.iloc[:, 0]
    if isinstance(y, pd.DataFrame):
        return encode_frame(y, _ORIENT)
    if isinstance(y, pd.Series):
        value: dict[str, Any] = {"index": y.index.tolist(), "data": y.tolist()}
        if y.name is not None:  # the server calls an unnamed target "y"
            value["name"] = y.name
        return value
    raise TypeError(f"y must be a pandas Series or DataFrame, not {type(y).__name__}")


# ---------------------------------------------------------------------------------------------
# The client


class ModelClient:
    """One model of an mlserver, used like an estimator: `fit` returns a key, `predict` uses it.

    Args:
        url: the server's base URL, e.g. "http://127.0.0.1:8080".
        model: the model's name, i.e. its route on the server.
        token: sent as `Authorization: Bearer <token>` when given.
        timeout: seconds each HTTP request may take; waiting for training is bounded separately.

    Holds one keep-alive `requests.Session`: use it as a context manager or call `close()`,
    and give each thread its own client (sessions are not thread-safe).
    """

    def __init__(
        self, url: str, model: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.endpoint = f"{self.url}/{quote(model, safe='')}"
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if token is not None:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"ModelClient({self.url!r}, {self.model!r})"

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    # -- the verbs -------------------------------------------------------------------------

    def fit(
        self,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None = None,
        *,
        name: str | None = None,
        retrain: bool = False,
        modkwargs: Mapping[str, Any] | None = None,
        algkwargs: Mapping[str, Any] | None = None,
        wait: bool = True,
        wait_timeout: float | None = None,
        progress: bool = False,
    ) -> str:
        """Train on the server (PUT) and return the model-key.

        The same data and kwargs give the same key, and train only once unless `retrain`;
        `name` derives the key from the name instead. With `wait`, polls until the version is
        no longer RUNNING, at most `wait_timeout` seconds (None: no limit), printing progress to
        stderr if `progress`.

        Raises:
            TrainingFailed: the version ended FAILED (carries the server's error text).
            WaitTimeout: still RUNNING after `wait_timeout` seconds.
            BadRequest: e.g. `make_model` rejected `modkwargs`.
        """
        body: dict[str, Any] = {"x": _encode_x(x), "orient": _ORIENT}
        if y is not None:
            body["y"] = _encode_y(y)
        if name is not None:
            body["name"] = name
        if retrain:
            body["retrain"] = True
        if modkwargs:
            body["modkwargs"] = dict(modkwargs)
        if algkwargs:
            body["algkwargs"] = dict(algkwargs)
        started = time.monotonic()
        state = self._request("PUT", body=body)
        key: str = state["model-key"]
        if wait:
            self._wait(key, state, started, wait_timeout, progress)
        return key

    def predict(
        self, x: pd.DataFrame, key: str, method: str = "predict"
    ) -> pd.Series | pd.DataFrame:
        """Predict with the newest finished version of `key` (POST), aligned to `x.index`.

        One output column comes back as a Series named after the training target, several as a
        DataFrame (e.g. `method="predict_proba"`: a column per class); floats at full float64
        precision. `attrs["version"]` says which version answered (an older one while a retrain
        runs), `attrs["warnings"]` what the server warned about (e.g. library-version skew).

        Raises:
            Conflict: no version of the key has finished yet (`status` RUNNING or FAILED).
            Unprocessable: x does not fit the model, e.g. other columns than in training.
        """
        body: dict[str, Any] = {"x": _encode_x(x), "orient": _ORIENT, "model-key": key}
        if method != "predict":
            body["method"] = method
        answer = self._request("POST", body=body)
        frame = _answer_frame(answer["y"]).set_axis(x.index, axis=0)
        result: pd.Series | pd.DataFrame = frame.iloc[:, 0] if frame.shape[1] == 1 else frame
        result.attrs["version"] = answer.get("version")
        if answer.get("warnings"):
            result.attrs["warnings"] = list(answer["warnings"])
        return result

    def update(
        self,
        x: pd.DataFrame,
        y: pd.Series | pd.DataFrame | None,
        key: str,
        *,
        wait: bool = True,
        wait_timeout: float | None = None,
        progress: bool = False,
    ) -> int:
        """Update the newest finished version with new data (PATCH); return the new version.

        Waits for the update like `fit` does, with the same options and exceptions.

        Raises:
            MethodNotAllowed: the model has no update.
            Conflict: a version of the key is RUNNING, or none has finished.
        """
        body: dict[str, Any] = {"x": _encode_x(x), "orient": _ORIENT, "model-key": key}
        if y is not None:
            body["y"] = _encode_y(y)
        started = time.monotonic()
        state = self._request("PATCH", body=body)
        if wait:
            self._wait(key, state, started, wait_timeout, progress)
        return int(state["version"])

    def status(self, key: str) -> dict[str, Any]:
        """The newest version of `key` as the server reports it (status, version, error, ...)."""
        return self._request("GET", params={"model-key": key})

    def delete(self, key: str) -> int:
        """Delete every version of `key`; returns how many there were."""
        return int(self._request("DELETE", params={"model-key": key})["deleted"])

    def keys(self) -> list[dict[str, Any]]:
        """The newest version of every key of this model (model-key, status, version, finished)."""
        return list(self._request("GET")["keys"])

    # -- plumbing --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, or the typed exception for a failure."""
        answer = self._send(method, params, body)
        if answer.status_code >= 400:
            raise _server_error(answer)
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise ClientError(
                f"{method} {self.endpoint} answered {answer.status_code} without JSON: "
                f"{answer.content[:200]!r}"
            ) from None

    def _send(
        self, method: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> _Answer:
        """Send one request and read the whole answer.

        NOTE: only a copy of the answer leaves this frame: a `requests.Response` kept alive by an
        exception's traceback would keep its connection pool, and so its socket, open after
        `close()` (urllib3 2.8 closes pools when they are garbage collected).
        """
        headers = None if body is None else {"Content-Type": "application/json"}
        data = None if body is None else dumps(body)
        try:
            with self._session.request(
                method,
                self.endpoint,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
            ) as response:
                return _Answer(
                    response.status_code, response.reason, response.headers, response.content
                )
        except requests.Timeout as exc:
            raise ConnectionFailed(
                f"{method} {self.endpoint}: no answer within {self.timeout:g} s", self.endpoint
            ) from exc
        except requests.ConnectionError as exc:
            raise ConnectionFailed(
                f"cannot reach mlserver at {self.endpoint}: {_reason(exc)}", self.endpoint
            ) from exc
        except requests.RequestException as exc:
            raise ClientError(f"{method} {self.endpoint} failed: {exc}") from exc

    def _wait(
        self,
        key: str,
        state: dict[str, Any],
        started: float,
        timeout: float | None,
        progress: bool,
    ) -> dict[str, Any]:
        """Poll GET until `key` is no longer RUNNING; raise if it FAILED or time ran out."""
        stream = sys.stderr if progress else None
        shown = None
        while state["status"] == "RUNNING":
            elapsed = time.monotonic() - started
            if stream is not None and (shown is None or elapsed - shown >= _PROGRESS_EVERY):
                self._progress(stream, key, state, f"{elapsed:.1f} s")
                shown = elapsed
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeout(key, state, timeout)
            pause = min(max(elapsed * _POLL_FRACTION, _MIN_POLL), _MAX_POLL)
            if timeout is not None:
                pause = min(pause, timeout - elapsed)
            time.sleep(pause)
            state = self.status(key)
        if stream is not None:
            self._progress(stream, key, state, f"after {time.monotonic() - started:.1f} s")
        if state["status"] == "FAILED":
            raise TrainingFailed(key, state)
        return state

    def _progress(self, stream: IO[str], key: str, state: Mapping[str, Any], when: str) -> None:
        print(
            f"mlserver: {self.model} {key[:8]} v{state.get('version')} {state['status']} {when}",
            file=stream,
            flush=True,
        )


def _answer_frame(y: Any) -> pd.DataFrame:
    """The predictions of an orient-split answer, column names as the server sent them.

    NOTE: not `decode_frame`, which reads labels as `read_json` does: class labels "1" and
    "2" of a classifier trained on strings must stay strings.
    """
    if not isinstance(y, dict) or not isinstance(y.get("data"), list):
        raise ClientError(f"the server answered predictions in an unexpected form: {y!r:.200}")
    columns = y.get("columns")
    labels = pd.Index(columns, dtype=object) if isinstance(columns, list) else None
    frame = pd.DataFrame(y["data"], columns=labels)
    if labels is not None and all(type(c) is int for c in columns):
        frame.columns = pd.Index(columns)  # int64 labels, as pandas gives integer classes
    return frame
