"""Lineage: what each version learnt from, kept in the store, and what it makes possible:
reading a version's training data back, refitting a version with the running libraries
(its history of updates replayed in order), and finding the keys whose served version was
trained with other library versions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlserver.store.base import Claim, Version

__all__ = ["Lineage", "Skewed"]


@dataclass(frozen=True)
class Skewed:
    """A key whose served version was trained with other library versions than these."""

    version: Version
    warnings: tuple[str, ...]


class Lineage:
    """Reading stored training data, refits, and the keys a library upgrade affects."""

    def data(
        self, name: str, *, key: Any, version: Any
    ) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame | None]:
        """The x and y version `version` was trained or updated on.

        Raises ModelNotFound, InvalidPayload (key or version malformed), KeyNotFound (no
        such version, or its data is not stored).
        """
        raise NotImplementedError

    def refit(self, name: str, *, key: Any, version: Any = None, promote: Any = None) -> Claim:
        """Start a new version of the key trained from version `version`'s stored data and
        kwargs (the `served` one by default), its updates replayed in order, with the
        running libraries: `lineage.kind = "refit"`, `source` = that version. As PUT: a
        RUNNING version of the key is answered instead (`Claim.created` False).

        Raises ModelNotFound, InvalidPayload, KeyNotFound, NotReady (not FINISHED),
        Conflict (its data is not stored), Overloaded.
        """
        raise NotImplementedError

    def skewed(self, models: tuple[str, ...] | None = None) -> Iterator[Skewed]:
        """Every key (of `models`, default every registered model) whose served version was
        trained with another major.minor of a library its serializer depends on."""
        raise NotImplementedError
