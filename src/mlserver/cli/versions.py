"""`ml-server versions MODEL KEY`: a key's version history and aliases, read from the store
itself (no server needed), as a table for people or as one JSON line per version."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TextIO

from mlserver.cli.logs import say
from mlserver.cli.store import check_file, open_store, public_url
from mlserver.config import ENV_PREFIX, Settings
from mlserver.errors import InvalidPayload, StoreError
from mlserver.http.answers import version_body
from mlserver.store import SQLStore
from mlserver.store.base import Version

__all__ = ["DEFAULT_STORE", "EXIT_UNKNOWN", "add_parser", "run"]

#: The store `ml-server serve` uses by default, so both find the same file.
DEFAULT_STORE = "sqlite:///mlserver.db"
#: Exit code when the store has no versions of the key, or failed while it was read.
EXIT_UNKNOWN = 1
#: Exit code of a MODEL or KEY no store can hold (as for other usage errors).
EXIT_USAGE = 2
# Versions read from the store per query when no --limit bounds them.
_PAGE = 500
_HEADER = ("VERSION", "STATUS", "ALIASES", "FINISHED", "VALIDATION", "SIZE")


def _limit(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return value


def add_parser(commands: Any) -> None:
    """Add `versions` to the subcommands `commands`."""
    listing = commands.add_parser(
        "versions",
        help="list the versions and aliases of a model-key",
        description="List the versions of a model-key, newest first, with their status, "
        "aliases, finish time, validation score and size, then the key's aliases; read from "
        "the store directly.",
    )
    listing.add_argument("model", metavar="MODEL", help="the model's name (its route)")
    listing.add_argument("key", metavar="KEY", help="the model-key")
    listing.add_argument(
        "--store",
        metavar="URL",
        help=f"database URL of the model store [env {ENV_PREFIX}STORE; default {DEFAULT_STORE}]",
    )
    listing.add_argument(
        "--limit", type=_limit, metavar="N", help="show at most the newest N versions"
    )
    listing.add_argument(
        "--json", action="store_true", help="print one JSON object per version instead"
    )
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List the versions; exit 1 if the key has none, 2 for a store that cannot be opened
    or a MODEL or KEY no store can hold."""
    url = args.store or os.environ.get(ENV_PREFIX + "STORE") or DEFAULT_STORE
    check_file(url)
    store = open_store(url, Settings())
    try:
        return _show(store, url, args)
    except InvalidPayload as exc:
        say(sys.stderr, f"error: {exc}")
        return EXIT_USAGE
    except StoreError as exc:
        say(sys.stderr, f"error: reading store {public_url(url)} failed: {exc}")
        return EXIT_UNKNOWN
    finally:
        store.close()


def _show(store: SQLStore, url: str, args: argparse.Namespace) -> int:
    versions, more = _read(store, args.model, args.key, args.limit)
    if not versions:
        say(
            sys.stderr,
            f"error: model-key {args.key} of model {args.model} has no versions "
            f"in store {public_url(url)}",
        )
        return EXIT_UNKNOWN
    if args.json:
        for version in versions:
            print(json.dumps(version_body(version)))
        return 0
    _table(sys.stdout, versions, store.aliases(args.model, args.key))
    if more:
        print(f"(older versions not shown: --limit {args.limit})")
    return 0


def _read(store: SQLStore, model: str, key: str, limit: int | None) -> tuple[list[Version], bool]:
    """The key's versions newest first, the newest `limit` of them (all without), and
    whether older ones were left out."""
    versions: list[Version] = []
    before = None
    while True:
        size = _PAGE if limit is None else min(limit - len(versions), _PAGE)
        page = store.versions(model, key, limit=size, before=before)
        versions.extend(page.items)
        if page.next is None:
            return versions, False
        if limit is not None and len(versions) >= limit:
            return versions, True
        before = page.next


def _table(out: TextIO, versions: list[Version], aliases: Mapping[str, int]) -> None:
    rows = [_HEADER, *(_row(v) for v in versions)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    for row in rows:
        cells = [f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]), file=out)
    named = ", ".join(f"{name} -> {number}" for name, number in aliases.items())
    print(f"aliases: {named or 'none'}", file=out)


def _row(version: Version) -> tuple[str, ...]:
    return (
        str(version.version),
        version.status.value,
        ",".join(version.aliases) or "-",
        _when(version.finished),
        _score(version.metrics),
        "-" if version.size is None else _size(version.size),
    )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _score(metrics: Mapping[str, Any]) -> str:
    """The validation score and its scorer, e.g. "0.9333 accuracy"."""
    validation = metrics.get("validation")
    if not isinstance(validation, Mapping):
        return "-"
    score = validation.get("score")
    if score is None:
        return "error" if validation.get("error") else "-"
    return f"{score:.4g} {validation.get('scoring', '')}".rstrip()


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
