"""Per-process cache of deserialized models, keyed by version identity.

A version's bytes never change once FINISHED, so an entry is valid for as long as its version
exists: freshness is the caller's cheap question "which version is newest?", not a timer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["ModelCache"]


class ModelCache:
    """LRU of loaded models bounded by count; a cold version is loaded once even when many
    threads ask for it at the same moment."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The cached value for `key`, calling `load()` once if it is missing."""
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
                self._loading.pop(key, None)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
