"""`ModelClient`: fit, predict, update, status and delete over HTTP, the way estimators do,
plus a key's version history and aliases (`mlserver.client_history`).

    with ModelClient("http://127.0.0.1:8080", "logistic") as client:
        key = client.fit(x_train, y_train)        # PUT, then polls GET until training ends
        labels = client.predict(x_test, key)      # POST: a Series aligned to x_test.index
        client.set_alias(key, "served", 1)        # roll back to version 1

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
    │   ├── NotFound            404: an unknown model, model-key, version or alias
    │   ├── MethodNotAllowed    405: the model does not take that verb (e.g. no update)
    │   ├── Conflict            409: the key's state forbids it (not ready, not servable, an
    │   │                            alias points at the version); `status` says which
    │   ├── RequestTooLarge     413: the body is above the server's limit
    │   ├── UnsupportedMedia    415: the body is not JSON (or an import's format is refused)
    │   ├── Unprocessable       422: x does not fit the model (e.g. other columns)
    │   └── ServerFailure       5xx: a bug, or the server's database is unreachable
    ├── TrainingFailed          the version being waited for ended FAILED
    ├── WaitTimeout             the version was still RUNNING when the wait ran out
    └── NotRunning              `cancel` found no RUNNING version to cancel
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import orjson
import pandas as pd
import requests

from mlserver.client_errors import (
    Answer,
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    NotRunning,
    RequestTooLarge,
    ServerError,
    ServerFailure,
    TrainingFailed,
    Unauthorized,
    Unprocessable,
    UnsupportedMedia,
    WaitTimeout,
    os_reason,
    server_error,
)
from mlserver.client_history import HistoryCalls
from mlserver.client_imports import ExportedArtifact, ImportCalls
from mlserver.client_lineage import LineageCalls
from mlserver.frames.encode import dumps, encode_frame

__all__ = [
    "DEFAULT_TIMEOUT",
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "ExportedArtifact",
    "Forbidden",
    "MethodNotAllowed",
    "ModelClient",
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


class ModelClient(HistoryCalls, LineageCalls, ImportCalls):
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
        promote: str | None = None,
        validation: float | None = None,
        scoring: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = None,
        progress: bool = False,
    ) -> str:
        """Train on the server (PUT) and return the model-key.

        The same data and kwargs give the same key, and train only once unless `retrain`;
        `name` derives the key from the name instead. `promote` says when the new version
        becomes `served` ("always", the server's default, "if-better" or "never");
        `validation` holds out that share of the rows (in (0, 0.5]) and scores the fit on
        them, with the scikit-learn scorer `scoring` (default: the model's own `score`).
        With `wait`, polls until the version is no longer RUNNING, at most `wait_timeout`
        seconds (None: no limit), printing progress to stderr if `progress`.

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
        _add(body, promote=promote, validation=validation, scoring=scoring)
        started = time.monotonic()
        state = self._request("PUT", body=body)
        key: str = state["model-key"]
        if wait:
            self._wait(key, state, started, wait_timeout, progress)
        return key

    def predict(
        self,
        x: pd.DataFrame,
        key: str,
        method: str = "predict",
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> pd.Series | pd.DataFrame:
        """Predict with the served version of `key` (POST), aligned to `x.index`; or with
        version number `version`, or the version `alias` names (not both).

        One output column comes back as a Series named after the training target, several as a
        DataFrame (e.g. `method="predict_proba"`: a column per class); floats at full float64
        precision. `attrs["version"]` says which version answered (not a newer candidate, nor
        one still training), `attrs["warnings"]` what the server warned about (e.g.
        library-version skew).

        Raises:
            Conflict: no version of the key has finished yet (`status` RUNNING or FAILED), or
                `version` is not FINISHED.
            NotFound: no such `version` or `alias`.
            BadRequest: both `version` and `alias`.
            Unprocessable: x does not fit the model, e.g. other columns than in training.
        """
        body: dict[str, Any] = {"x": _encode_x(x), "orient": _ORIENT, "model-key": key}
        if method != "predict":
            body["method"] = method
        _add(body, version=version, alias=alias)
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
        promote: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = None,
        progress: bool = False,
    ) -> int:
        """Update the served version with new data (PATCH); return the new version.

        `promote` as for `fit`. With `y`, the server scores the served version on the new
        rows before it learns from them (`metrics["prequential"]` of the new version). Waits
        for the update like `fit` does, with the same options and exceptions.

        Raises:
            MethodNotAllowed: the model has no update.
            Conflict: a version of the key is RUNNING, or none has finished.
        """
        body: dict[str, Any] = {"x": _encode_x(x), "orient": _ORIENT, "model-key": key}
        if y is not None:
            body["y"] = _encode_y(y)
        _add(body, promote=promote)
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

    def keys(self, status: str | None = None) -> list[dict[str, Any]]:
        """The newest version of every key of this model (model-key, status, version,
        finished), keys in ascending order, every page; only those whose newest version has
        `status` (RUNNING, FINISHED or FAILED) when given."""
        return list(self.iter_keys(status))

    def iter_keys(
        self, status: str | None = None, page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """`keys`, one page of `page_size` keys (1..1000) asked for at a time, as consumed."""
        params: dict[str, str] = {"limit": str(page_size)}
        if status is not None:
            params["status"] = status
        while True:
            page = self._request("GET", params=params)
            yield from page["keys"]
            if page.get("next") is None:
                return
            params["after"] = str(page["next"])

    # -- plumbing --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        *path: str | int,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request to the model's route, or to `path` below it (each part quoted); the
        decoded JSON answer, or the typed exception for a failure."""
        url = "/".join([self.endpoint, *(quote(str(part), safe="") for part in path)])
        answer = self._send(method, url, params, body)
        if answer.status_code >= 400:
            raise server_error(answer)
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise ClientError(
                f"{method} {url} answered {answer.status_code} without JSON: "
                f"{answer.content[:200]!r}"
            ) from None

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | bytes | None,
    ) -> Answer:
        """Send one request and read the whole answer.

        NOTE: only a copy of the answer leaves this frame: a `requests.Response` kept alive by an
        exception's traceback would keep its connection pool, and so its socket, open after
        `close()` (urllib3 2.8 closes pools when they are garbage collected).
        """
        headers = None if body is None else {"Content-Type": "application/json"}
        data = None if body is None else body if isinstance(body, bytes) else dumps(body)
        if isinstance(body, bytes):  # an artifact's bytes, as they are
            headers = {"Content-Type": "application/octet-stream"}
        try:
            with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
            ) as response:
                return Answer(
                    response.status_code, response.reason, response.headers, response.content
                )
        except requests.Timeout as exc:
            raise ConnectionFailed(
                f"{method} {url}: no answer within {self.timeout:g} s", url
            ) from exc
        except requests.ConnectionError as exc:
            raise ConnectionFailed(
                f"cannot reach mlserver at {url}: {os_reason(exc)}", url
            ) from exc
        except requests.RequestException as exc:
            raise ClientError(f"{method} {url} failed: {exc}") from exc

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


def _add(body: dict[str, Any], **optional: Any) -> None:
    """Put the `optional` parameters that are given into `body`: None leaves the server's
    default."""
    body.update((name, value) for name, value in optional.items() if value is not None)


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
