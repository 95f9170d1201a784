"""Lineage as `ModelClient` methods: the rows a version learnt from, and refits.

x, y = client.data(key, 3)          # what version 3 was trained or updated on (admin)
client.refit(key)                   # a new version from the served one's history
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import pandas as pd

from mlserver.client_errors import ClientError, server_error
from mlserver.frames.orients import decode_training

__all__ = ["LineageCalls"]

_ARROW = "application/vnd.apache.arrow.stream"
#: The schema metadata naming an Arrow answer's target columns.
_TARGETS = b"mlserver.targets"
# A client decodes what the server already bounded: no limits of its own.
_UNBOUNDED = 2**62


class LineageCalls:
    """The lineage routes below `/{model}/{key}`; `ModelClient` provides the plumbing."""

    endpoint: str

    def _request(
        self,
        method: str,
        *path: str | int,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def _send(self, method: str, url: str, params: Any, body: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def _wait(self, key: str, state: dict[str, Any], started: float, *args: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def data(
        self, key: str, version: int, *, arrow: bool = False
    ) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame | None]:
        """The x and y version `version` of `key` learnt from (needs an admin token).

        As JSON they decode as the server decodes a fit's body; with `arrow` they come as
        one Arrow stream (pyarrow needed), dtypes as pyarrow gives them back.

        Raises:
            NotFound: no such version, or its data is not stored.
        """
        if not arrow:
            answer = self._request("GET", key, "versions", version, "data")
            x, y = decode_training(
                answer["x"], answer["y"], "split", max_rows=_UNBOUNDED, max_columns=_UNBOUNDED
            )
            return x.frame, y
        url = f"{self.endpoint}/{key}/versions/{version}/data"
        answer = self._arrow(url)
        import pyarrow.ipc

        table = pyarrow.ipc.open_stream(answer.content).read_all()
        targets = orjson.loads((table.schema.metadata or {}).get(_TARGETS, b"[]"))
        frame = table.to_pandas()
        x = frame.drop(columns=targets)
        if not targets:
            return x, None
        y = frame[targets]
        return x, y.iloc[:, 0] if len(targets) == 1 else y

    def _arrow(self, url: str) -> Any:
        session = self._session  # type: ignore[attr-defined]
        previous = session.headers.get("Accept")
        session.headers["Accept"] = _ARROW
        try:
            answer = self._send("GET", url, None, None)
        finally:
            session.headers["Accept"] = previous
        if answer.status_code >= 400:
            raise server_error(answer)
        if answer.headers.get("Content-Type", "").split(";")[0] != _ARROW:
            raise ClientError(f"GET {url} did not answer an Arrow stream")
        return answer

    def refit(
        self,
        key: str,
        version: int | None = None,
        *,
        promote: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Train a new version of `key` from version `version`'s stored data and kwargs
        (default: the served one), its updates replayed in order, with the server's running
        libraries; `promote` as for `fit`. Returns the new version's status (with `wait`,
        once it is no longer RUNNING), or the RUNNING version the key already had.

        Raises:
            Conflict: the version's data is not stored, or it is not FINISHED.
            TrainingFailed, WaitTimeout: as for `fit`.
        """
        body = {
            name: value
            for name, value in (("version", version), ("promote", promote))
            if value is not None
        }
        started = time.monotonic()
        state = self._request("POST", key, "refit", body=body)
        if wait:
            state = self._wait(key, state, started, wait_timeout, progress)
        return state
