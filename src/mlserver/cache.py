"""Per-process cache of deserialized models, keyed by version identity.

A version's bytes never change once FINISHED, so an entry is valid for as long as its version
exists: freshness is the caller's cheap question "which version is newest?", not a timer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["ModelCache", "ServedCache"]


class ModelCache:
    """LRU of loaded models bounded by count and by bytes; a cold version is loaded once even
    when many threads ask for it at the same moment.

    An entry's bytes are its serialized size: a proxy for its memory that costs nothing to
    know. The newest entry always stays, even when it alone is above `max_bytes`.
    """

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.bytes = 0
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any], size: int = 0) -> Any:
        """The cached value for `key`, calling `load()` once if it is missing; `size` is what
        the entry counts against `max_bytes`."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._entries:  # another thread loaded it while we waited
                    self.hits += 1
                    return self._entries[key]
                self.misses += 1
            try:
                value = load()
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self._entries[key] = value
                self._sizes[key] = size
                self.bytes += size
                self._loading.pop(key, None)
                while len(self._entries) > 1 and (
                    len(self._entries) > self.capacity
                    or (self.max_bytes is not None and self.bytes > self.max_bytes)
                ):
                    evicted, _ = self._entries.popitem(last=False)
                    self.bytes -= self._sizes.pop(evicted)
            return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class ServedCache:
    """Which version an alias (`served`, or a number) of a key names, remembered for `ttl`
    seconds.

    PERF: it spares predict a database round trip. This process forgets a key the moment it
    finishes, deletes or cancels a version of it or moves an alias, so its own changes show at
    once; changes made by other processes sharing the store show within `ttl` seconds.
    `ttl=0` always asks.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], dict[Hashable, tuple[float, Any]]] = {}
        self._size = 0
        self._lock = threading.Lock()

    def get(self, model: str, key: str, selector: Hashable = "served") -> Any | None:
        named = self._entries.get((model, key))
        entry = None if named is None else named.get(selector)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, model: str, key: str, version: Any, selector: Hashable = "served") -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            named = self._entries.setdefault((model, key), {})
            self._size += selector not in named
            named[selector] = (time.monotonic() + self.ttl, version)
            if self._size > 100_000:  # bound memory for key-churning workloads
                self._drop_expired()

    def forget(self, model: str, key: str) -> None:
        with self._lock:
            self._size -= len(self._entries.pop((model, key), ()))

    def _drop_expired(self) -> None:
        now = time.monotonic()
        kept: dict[tuple[str, str], dict[Hashable, tuple[float, Any]]] = {}
        for name, named in self._entries.items():
            live = {selector: entry for selector, entry in named.items() if entry[0] >= now}
            if live:
                kept[name] = live
        self._entries = kept
        self._size = sum(len(named) for named in kept.values())
