"""A key's life beyond its newest version: its history, its aliases (`served` among them),
cancelling a job, deleting one version, and the paged key listing; and which version a
predict or an update runs. No HTTP here."""

from __future__ import annotations

from typing import Any

from mlserver.arguments import alias_name, model_key, status_filter, whole_number
from mlserver.cache import ServedCache
from mlserver.errors import InvalidPayload, KeyNotFound, NotReady
from mlserver.jobs import Jobs
from mlserver.registry import Registry
from mlserver.store.base import SERVED, Page, Status, Store, Version

__all__ = ["KEY_PAGE", "VERSION_PAGE", "Lifecycle"]

#: Versions per page by default, and at most.
VERSION_PAGE = (50, 1000)
#: Keys per page by default (a listing without `limit` says `next` beyond it), and at most.
KEY_PAGE = (1000, 1000)


class Lifecycle:
    """Versions and aliases of the keys of one registry, in one store."""

    def __init__(self, registry: Registry, store: Store, served: ServedCache, jobs: Jobs) -> None:
        self.registry = registry
        self.store = store
        self.served = served
        self.jobs = jobs

    def select(
        self,
        name: str,
        key: str,
        version: Any = None,
        alias: Any = None,
        *,
        cached: bool = True,
    ) -> Version:
        """The FINISHED version to run: number `version`, else the one `alias` names, else
        `served`. `cached` allows the per-process cache's answer, which may be up to
        `freshness_seconds` behind other processes."""
        if version is not None and alias is not None:
            raise InvalidPayload("give version or alias, not both", "alias")
        selector: int | str = SERVED
        if version is not None:
            selector = whole_number(version, "version")
        elif alias is not None:
            selector = alias_name(alias)
        found = self.served.get(name, key, selector) if cached else None
        if found is not None:
            return found
        if isinstance(selector, int):
            found = self.store.version(name, key, selector)
        else:
            found = self.store.resolve(name, key, selector)
        if found is None or found.status is not Status.FINISHED:
            found = self._explain(name, key, selector, found)
        self.served.put(name, key, found, selector)
        return found

    def _explain(self, name: str, key: str, selector: int | str, found: Version | None) -> Version:
        """Why `selector` names no FINISHED version: KeyNotFound or NotReady (a `served`
        that appeared between our reads is returned instead)."""
        if found is not None:  # a version number that is RUNNING or FAILED
            detail = f": {found.error}" if found.error else ""
            raise NotReady(
                f"version {found.version} of {key!r} is {found.status}{detail}",
                found.status.value,
            )
        newest = self.store.newest(name, key)
        if newest is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        if isinstance(selector, int):
            raise KeyNotFound(f"model-key {key!r} of {name!r} has no version {selector}")
        if selector != SERVED:
            raise KeyNotFound(f"model-key {key!r} of {name!r} has no alias {selector!r}")
        served = self.store.resolve(name, key, SERVED)  # it finished between our reads
        if served is not None:
            return served
        detail = f": {newest.error}" if newest.error else ""
        raise NotReady(
            f"no version of {key!r} has finished; the newest is {newest.status}{detail}",
            newest.status.value,
        )

    def versions(self, name: str, *, key: Any, limit: Any = None, before: Any = None) -> Page:
        """A page of a key's versions, newest first; `Page.next` is the next page's `before`."""
        key = self._key(name, key)
        default, most = VERSION_PAGE
        limit = default if limit is None else whole_number(limit, "limit", maximum=most)
        before = None if before is None else whole_number(before, "before")
        page = self.store.versions(name, key, limit=limit, before=before)
        if not page.items and self.store.newest(name, key) is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        return page

    def finished_numbers(self, name: str, key: str) -> list[int]:
        """The numbers of a key's FINISHED versions, ascending (what V2 lists as versions)."""
        numbers: list[int] = []
        before = None
        while True:
            page = self.store.versions(name, key, limit=1000, before=before)
            numbers += [v.version for v in page.items if v.status is Status.FINISHED]
            if page.next is None:
                return sorted(numbers)
            before = page.next

    def version(self, name: str, *, key: Any, number: Any) -> Version:
        """Version `number` of a key, with its aliases."""
        key = self._key(name, key)
        number = whole_number(number, "version")
        found = self.store.version(name, key, number)
        if found is None:
            self._no_version(name, key, number)
        return found

    def delete_version(self, name: str, *, key: Any, number: Any) -> tuple[Version, bool]:
        """Delete one version, or cancel it while it is RUNNING: it becomes FAILED
        ("cancelled"), its job stops where its executor can stop it, and its result is never
        stored. Returns the version as it was and whether it was cancelled."""
        key = self._key(name, key)
        number = whole_number(number, "version")
        before = self.store.delete_version(name, key, number)
        self.served.forget(name, key)
        cancelled = before.status is Status.RUNNING
        if cancelled:
            self.jobs.cancel(before.id)
        return before, cancelled

    def aliases(self, name: str, *, key: Any) -> dict[str, int]:
        """Alias name -> version number."""
        key = self._key(name, key)
        found = self.store.aliases(name, key)
        if not found and self.store.newest(name, key) is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        return found

    def set_alias(self, name: str, *, key: Any, alias: Any, version: Any) -> Version:
        """Point `alias` at a FINISHED version; moving `served` rolls back (or forward)."""
        key = self._key(name, key)
        alias = alias_name(alias)
        if version is None:
            raise InvalidPayload("missing parameter 'version'", "version")
        number = whole_number(version, "version")
        moved = self.store.set_alias(name, key, alias, number)
        self.served.forget(name, key)
        return moved

    def delete_alias(self, name: str, *, key: Any, alias: Any) -> None:
        """Remove an alias; `served` cannot be removed (move it instead)."""
        key = self._key(name, key)
        alias = alias_name(alias)
        # NOTE: `served` is refused by the store itself (Conflict), for every caller.
        if not self.store.delete_alias(name, key, alias):
            if self.store.newest(name, key) is None:
                raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
            raise KeyNotFound(f"model-key {key!r} of {name!r} has no alias {alias!r}")
        self.served.forget(name, key)

    def keys(
        self,
        name: str,
        *,
        limit: Any = None,
        after: Any = None,
        status: Any = None,
        contains: Any = None,
    ) -> Page:
        """A page of a model's keys in ascending order, each with its newest version; with
        `contains`, only keys holding that text."""
        self.registry.get(name)
        default, most = KEY_PAGE
        limit = default if limit is None else whole_number(limit, "limit", maximum=most)
        if after is not None and not isinstance(after, str):
            raise InvalidPayload("after must be a model-key", "after")
        if contains is not None and not isinstance(contains, str):
            raise InvalidPayload("contains must be text", "contains")
        return self.store.keys(
            name, limit=limit, after=after, status=status_filter(status), contains=contains
        )

    def _key(self, name: str, key: Any) -> str:
        self.registry.get(name)
        return model_key(key)

    def _no_version(self, name: str, key: str, number: int) -> None:
        if self.store.newest(name, key) is None:
            raise KeyNotFound(f"model-key {key!r} has no versions of {name!r}")
        raise KeyNotFound(f"model-key {key!r} of {name!r} has no version {number}")
