"""What the dashboard shows, read from the registry and the store: every model with its keys
counted by status, a page of a model's keys, a key's versions and aliases with their scores,
and the jobs running or failed. No HTTP here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlserver.store.base import Page, Status, Version

if TYPE_CHECKING:
    from mlserver.service import Service

__all__ = ["KeyView", "KeysView", "ModelSummary", "Overview", "Score", "score_of"]

#: Keys and versions a dashboard page lists at once.
PAGE = 50


@dataclass(frozen=True)
class ModelSummary:
    """A registered model as the models page lists it."""

    model: str
    description: str
    serializer: str
    operations: tuple[str, ...]
    methods: tuple[str, ...]
    #: Keys by the status of their newest version.
    keys_by_status: Mapping[str, int]

    @property
    def keys(self) -> int:
        return sum(self.keys_by_status.values())


@dataclass(frozen=True)
class KeysView:
    """One page of a model's keys, and how many keys it has by status."""

    model: ModelSummary
    page: Page
    status: str | None
    contains: str | None


@dataclass(frozen=True)
class Score:
    """A version's score: its validation score, else its prequential one."""

    version: int
    score: float
    scoring: str
    kind: str


@dataclass(frozen=True)
class KeyView:
    """A page of a key's versions (newest first), its aliases, and the scores of that page's
    versions, oldest first."""

    model: str
    key: str
    page: Page
    aliases: Mapping[str, int]
    scores: tuple[Score, ...]


def score_of(version: Version) -> Score | None:
    """The score a chart of versions shows for `version`, if it has one."""
    for kind in ("validation", "prequential"):
        found = version.metrics.get(kind)
        if isinstance(found, Mapping) and isinstance(found.get("score"), (int, float)):
            return Score(version.version, float(found["score"]), str(found.get("scoring")), kind)
    return None


class Overview:
    """The dashboard's reads, over one service's registry and store."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.lifecycle = service.lifecycle

    def models(self) -> list[ModelSummary]:
        """Every registered model, in registration order, with its keys counted."""
        counts = self.store.key_counts()
        return [_summary(entry, counts.get(entry["model"], {})) for entry in self.service.models()]

    def model(self, name: str) -> ModelSummary:
        """One registered model, with its keys counted (ModelNotFound if unknown)."""
        self.service.registry.get(name)
        entry = next(e for e in self.service.models() if e["model"] == name)
        return _summary(entry, self.store.key_counts(name).get(name, {}))

    def keys(
        self,
        name: str,
        *,
        status: Any = None,
        contains: Any = None,
        after: Any = None,
    ) -> KeysView:
        """A page of a model's keys, filtered by status and by text in the key."""
        status = status or None
        contains = contains or None
        page = self.lifecycle.keys(
            name, limit=PAGE, after=after or None, status=status, contains=contains
        )
        return KeysView(self.model(name), page, status, contains)

    def key(self, name: str, key: Any, *, before: Any = None) -> KeyView:
        """A page of a key's versions with its aliases and scores."""
        page = self.lifecycle.versions(name, key=key, limit=PAGE, before=before or None)
        aliases = self.lifecycle.aliases(name, key=key)
        scores = tuple(s for v in reversed(page.items) if (s := score_of(v)) is not None)
        return KeyView(name, key, page, aliases, scores)

    def version(self, name: str, key: Any, number: Any) -> Version:
        """One version of a key, with its aliases."""
        return self.lifecycle.version(name, key=key, number=number)

    def jobs(self, limit: int = PAGE) -> tuple[list[Version], list[Version]]:
        """The RUNNING versions of the registered models and their most recent failures,
        each newest first."""
        models = [wrapper.name for wrapper in self.service.registry]
        running = self.store.recent(Status.RUNNING, models=models, limit=limit)
        failed = self.store.recent(Status.FAILED, models=models, limit=limit)
        return running, failed


def _summary(entry: Mapping[str, Any], counts: Mapping[str, int]) -> ModelSummary:
    return ModelSummary(
        model=entry["model"],
        description=entry["description"],
        serializer=entry["serializer"],
        operations=tuple(entry["operations"]),
        methods=tuple(entry["methods"]),
        keys_by_status={s.value: counts.get(s.value, 0) for s in Status},
    )
