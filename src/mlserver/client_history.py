"""A key's version history and aliases, as `ModelClient` methods: list and read versions,
move aliases (roll back or promote a candidate), delete a version, cancel a running one.

    for v in client.versions(key):                # newest first, a page at a time
        print(v["version"], v["status"], v["aliases"], v["metrics"].get("validation"))
    client.set_alias(key, "served", 2)            # predictions now come from version 2
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlserver.client_errors import NotRunning

__all__ = ["HistoryCalls"]


class HistoryCalls:
    """The history and alias routes below `/{model}/{key}`; `ModelClient` provides
    `_request` and `status`."""

    def _request(
        self,
        method: str,
        *path: str | int,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def status(self, key: str) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - ModelClient's own

    def versions(self, key: str, *, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every version of `key`, newest first, as the server describes it (`V`: status,
        aliases, metrics, size, ...); the next page of `page_size` (1..1000) is asked for
        only when the iteration gets there.

        Raises:
            NotFound: the key has no versions (at the first `next`).
        """
        params = {"limit": str(page_size)}
        while True:
            page = self._request("GET", key, "versions", params=params)
            yield from page["versions"]
            if page.get("next") is None:
                return
            params["before"] = str(page["next"])

    def version(self, key: str, number: int) -> dict[str, Any]:
        """Version `number` of `key` (`V`); NotFound if there is none."""
        return self._request("GET", key, "versions", number)

    def aliases(self, key: str) -> dict[str, int]:
        """The key's aliases and the version number each names, e.g. `{"served": 3}`."""
        return dict(self._request("GET", key, "aliases")["aliases"])

    def set_alias(self, key: str, alias: str, version: int) -> dict[str, Any]:
        """Point `alias` at version `version`, creating or moving it; moving `served` rolls
        back or forward (or promotes a candidate). The answer: model-key, alias, version.

        Raises:
            NotFound: no such version.
            Conflict: the version is not FINISHED.
        """
        return self._request("PUT", key, "aliases", alias, body={"version": version})

    def delete_alias(self, key: str, alias: str) -> dict[str, Any]:
        """Remove `alias` (NotFound if the key has none of that name; Conflict for
        `served`, which every key with a finished version keeps)."""
        return self._request("DELETE", key, "aliases", alias)

    def delete_version(self, key: str, number: int) -> dict[str, Any]:
        """Delete version `number` (a RUNNING one is cancelled instead); the answer says
        which (`deleted`, `cancelled`).

        Raises:
            NotFound: no such version.
            Conflict: an alias points at it: move or delete the alias first.
        """
        return self._request("DELETE", key, "versions", number)

    def cancel(self, key: str, version: int | None = None) -> dict[str, Any]:
        """Cancel the training of a RUNNING version (the newest without `version`): it ends
        FAILED ("cancelled") and its result is never stored. The server's answer, with
        `"cancelled": true`.

        Raises:
            NotRunning: that version is not RUNNING (nothing is deleted).
            NotFound: no such key or version.
        """
        state = self.status(key) if version is None else self.version(key, version)
        if state["status"] != "RUNNING":
            raise NotRunning(key, state)
        # NOTE: a job that finishes between the check and the DELETE is deleted instead,
        # unless an alias (such as `served`) points at it: then the server refuses (409).
        return self.delete_version(key, int(state["version"]))
