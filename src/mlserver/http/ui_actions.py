"""What the dashboard's buttons do: each action calls the service method of its API route
and needs that route's scope; the text it answers is what the person reads next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlserver.errors import Conflict, InvalidPayload
from mlserver.service import Service
from mlserver.store.base import SERVED, Status, Version

__all__ = ["ACTIONS", "Action", "target"]


@dataclass(frozen=True)
class Action:
    """What a dashboard button does: the scope of its API route, and how to run it."""

    title: str
    scope: str
    run: Callable[[Service, dict[str, str]], str]
    confirm: Callable[[dict[str, str]], str]


def _version_of(service: Service, p: dict[str, str]) -> Version:
    return service.lifecycle.version(p["model"], key=p["key"], number=p.get("version"))


def _move_alias(service: Service, p: dict[str, str]) -> str:
    alias = p.get("alias") or SERVED
    moved = service.lifecycle.set_alias(
        p["model"], key=p["key"], alias=alias, version=p.get("version")
    )
    return f"Alias {alias!r} now points at version {moved.version}."


def _cancel(service: Service, p: dict[str, str]) -> str:
    found = _version_of(service, p)
    if found.status is not Status.RUNNING:
        raise Conflict(
            f"version {found.version} is {found.status}: only a RUNNING job is cancelled"
        )
    service.lifecycle.delete_version(p["model"], key=p["key"], number=found.version)
    return f"Version {found.version} was cancelled: it is FAILED (cancelled)."


def _delete_version(service: Service, p: dict[str, str]) -> str:
    found = _version_of(service, p)
    if found.status is Status.RUNNING:
        raise Conflict(f"version {found.version} is RUNNING: cancel it instead")
    service.lifecycle.delete_version(p["model"], key=p["key"], number=found.version)
    return f"Version {found.version} was deleted."


def _refit(service: Service, p: dict[str, str]) -> str:
    claim = service.lineage.refit(p["model"], key=p["key"], version=p.get("version") or None)
    if claim.created:
        return f"Refit started: version {claim.version.version} is RUNNING."
    return f"Nothing started: version {claim.version.version} is {claim.version.status}."


def _delete_key(service: Service, p: dict[str, str]) -> str:
    deleted = service.delete(p["model"], key=p["key"])
    return f"Deleted {deleted} version{'s' if deleted != 1 else ''} of the key."


ACTIONS: dict[str, Action] = {
    "alias": Action(
        "Move an alias",
        "train",
        _move_alias,
        lambda p: f"Point alias {p.get('alias') or SERVED!r} at version {p.get('version')}?",
    ),
    "cancel": Action(
        "Cancel a job",
        "train",
        _cancel,
        lambda p: f"Cancel the job of version {p.get('version')}? Its result is never stored.",
    ),
    "refit": Action(
        "Refit",
        "train",
        _refit,
        lambda p: f"Train a new version from the stored data of version {p.get('version')}?",
    ),
    "delete-version": Action(
        "Delete a version",
        "train",
        _delete_version,
        lambda p: f"Delete version {p.get('version')} and its stored model for good?",
    ),
    "delete-key": Action(
        "Delete a key",
        "admin",
        _delete_key,
        lambda p: "Delete every version of this key for good?",
    ),
}


def target(service: Service, fields: dict[str, str]) -> None:
    """An action names a registered model and a key (400 otherwise)."""
    for name in ("model", "key"):
        if not fields.get(name):
            raise InvalidPayload(f"missing parameter {name!r}", name)
    service.registry.get(fields["model"])
