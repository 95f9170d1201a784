"""`ml-server refit --skewed [TARGET]`: refit, with the libraries installed here, every key
whose served version was trained with other versions of them; against the store itself (no
server needed), one key at a time, with a progress bar on stderr and one line per key on
stdout. Safe to interrupt and run again: a refitted key is no longer skewed, and a refit cut
short is run again by the lease rules."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any

from mlserver.cli.logs import say
from mlserver.cli.options import signer
from mlserver.cli.store import check_file, open_store
from mlserver.cli.target import registry
from mlserver.cli.versions import DEFAULT_STORE
from mlserver.config import ENV_PREFIX, Settings
from mlserver.errors import MLServerError
from mlserver.lineage import Skewed
from mlserver.service import Service
from mlserver.store.base import Status, Version

__all__ = ["add_parser", "run"]

#: Exit code when a key could not be refitted (or its refit FAILED).
EXIT_FAILED = 1
_POLL_SECONDS = 0.1
_BAR = 24


def add_parser(commands: Any) -> None:
    """Add `refit` to the subcommands `commands`."""
    refit = commands.add_parser(
        "refit",
        help="refit the keys a library upgrade affects",
        description="Refit, with the libraries installed here, every key whose served "
        "version was trained with another major.minor of a library its serializer depends "
        "on (scikit-learn, for joblib): from the version's stored training data and kwargs, "
        "its updates replayed in order. Reads and writes the store directly.",
    )
    refit.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="package.module:attr or path/to/file.py:attr naming the registry the server "
        "serves [env MLSERVER_TARGET; default: the catalog]",
    )
    refit.add_argument(
        "--skewed",
        action="store_true",
        required=True,
        help="refit the keys whose served version was trained with other library versions",
    )
    refit.add_argument("--dry-run", action="store_true", help="only list them, and why")
    refit.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="only this model (repeat for more; default: every model of TARGET)",
    )
    refit.add_argument(
        "--store",
        metavar="URL",
        help=f"database URL of the model store [env {ENV_PREFIX}STORE; default {DEFAULT_STORE}]",
    )
    refit.add_argument(
        "--signing-keys-file",
        metavar="PATH",
        help="file of signing keys, one 'id:secret' per line, the first signs: a signed "
        "store's server refuses unsigned versions [env MLSERVER_SIGNING_KEYS_FILE, or the "
        "keys themselves in MLSERVER_SIGNING_KEYS]",
    )
    refit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Refit (or with --dry-run list) the skewed keys; 0 when every refit finished."""
    url = args.store or os.environ.get(ENV_PREFIX + "STORE") or DEFAULT_STORE
    check_file(url)
    settings = Settings.from_env()
    models = registry(args.target or os.environ.get(ENV_PREFIX + "TARGET"))
    keys = signer(args.signing_keys_file, os.environ)
    store = open_store(url, settings)
    service = Service(models, store, settings=settings, signer=keys)
    try:
        service.start()  # NOTE: also runs again the refits an interrupted run left behind
        found = list(service.lineage.skewed(tuple(args.model) if args.model else None))
        if args.dry_run:
            for item in found:
                print(f"{_name(item.version)}: {'; '.join(item.warnings)}")
            say(sys.stderr, f"{len(found)} key(s) to refit")
            return 0
        return _refit_all(service, found)
    finally:
        service.close(timeout=0)
        store.close()


def _name(version: Version) -> str:
    return f"{version.model} {version.key} v{version.version}"


def _refit_all(service: Service, found: list[Skewed]) -> int:
    bar = _Progress(sys.stderr, len(found))
    failed = done = 0
    try:
        for item in found:
            bar.show(done, _name(item.version))
            line, ok = _refit_one(service, item.version)
            bar.clear()
            print(line, flush=True)
            failed += not ok
            done += 1
    except KeyboardInterrupt:
        bar.clear()
        say(
            sys.stderr,
            f"interrupted after {done} of {len(found)} key(s); run it again to go on "
            "(a refit cut short runs again)",
        )
        return 130
    bar.show(done, "")
    bar.end()
    say(
        sys.stderr,
        f"refitted {done - failed} of {len(found)} key(s)" + (f", {failed} not" if failed else ""),
    )
    return EXIT_FAILED if failed else 0


def _refit_one(service: Service, served: Version) -> tuple[str, bool]:
    """Refit one key and wait for its new version: the line to print, and whether it
    FINISHED."""
    try:
        claim = service.lineage.refit(served.model, key=served.key, version=served.version)
    except MLServerError as exc:
        return f"{_name(served)}: not refitted: {exc}", False
    number = claim.version.version
    while True:
        now = service.store.version(served.model, served.key, number)
        if now is None:
            return f"{_name(served)} -> v{number}: deleted while it trained", False
        if now.status is not Status.RUNNING:
            break
        time.sleep(_POLL_SECONDS)
    line = f"{_name(served)} -> v{number} {now.status.value}"
    if now.status is Status.FAILED:
        return f"{line}: {now.error}", False
    return line, True


class _Progress:
    """A bar on a terminal; on anything else one line per key, for logs."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()

    def show(self, done: int, current: str) -> None:
        if not self.tty:
            if current:
                print(f"refit {done + 1}/{self.total}: {current}", file=self.stream, flush=True)
            return
        filled = _BAR * done // max(self.total, 1)
        bar = "#" * filled + "-" * (_BAR - filled)
        print(f"\r[{bar}] {done}/{self.total} {current}"[:120], end="", file=self.stream)
        self.stream.flush()

    def clear(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)
