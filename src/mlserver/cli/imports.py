"""`ml-server import MODEL FILE` and `ml-server export MODEL KEY`: a model trained elsewhere
into the store, and any version's bytes out of it; against the store itself (no server
needed). The operator chose the file, so the CLI takes joblib and pickle as well as ONNX
and skops; the checks before anything is stored are the HTTP route's."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from mlserver.artifacts import FORMATS
from mlserver.cli.logs import say
from mlserver.cli.options import signer
from mlserver.cli.store import check_file, open_store, public_url
from mlserver.cli.target import registry
from mlserver.cli.versions import DEFAULT_STORE, EXIT_UNKNOWN
from mlserver.config import ENV_PREFIX, Settings
from mlserver.errors import ConfigurationError, MLServerError, StoreError
from mlserver.http.answers import version_body
from mlserver.service import Service
from mlserver.store.base import PROMOTE

__all__ = ["add_parsers"]

T = TypeVar("T")

#: Exit code of an artifact that fails its checks (nothing stored), as for usage errors.
EXIT_REFUSED = 2

_STORE_HELP = f"database URL of the model store [env {ENV_PREFIX}STORE; default {DEFAULT_STORE}]"
_TARGET_HELP = (
    "package.module:attr or path/to/file.py:attr naming the registry the server serves "
    "[env MLSERVER_TARGET; default: the catalog]"
)
_KEYS_HELP = (
    "file of signing keys, one 'id:secret' per line, the first signs (a signed store's "
    "server refuses unsigned versions) [env MLSERVER_SIGNING_KEYS_FILE, or the keys "
    "themselves in MLSERVER_SIGNING_KEYS]"
)


def add_parsers(commands: Any) -> None:
    """Add `import` and `export` to the subcommands `commands`."""
    importing = commands.add_parser(
        "import",
        help="store a model trained elsewhere as a version",
        description="Store a fitted model from a local file (joblib, pickle, skops or ONNX) "
        "as a FINISHED version of a key of route MODEL, after checking it loads, its input "
        "schema is known and it predicts. Prints the stored version as one line of JSON.",
    )
    importing.add_argument("model", metavar="MODEL", help="the route to import into")
    importing.add_argument("file", metavar="FILE", type=Path, help="the artifact")
    importing.add_argument(
        "--name", help="name the key (as PUT's name does); default: from the file's sha256"
    )
    importing.add_argument(
        "--serializer",
        choices=FORMATS,
        help="the file's format; default: guessed from its extension, else its first bytes",
    )
    importing.add_argument(
        "--sample",
        type=Path,
        metavar="CSV_OR_PARQUET",
        help="rows of x (CSV with a header, or Parquet): the training schema where the model "
        "does not name its columns, and what the check predicts on",
    )
    importing.add_argument(
        "--promote",
        choices=PROMOTE,
        help="whether it becomes the key's served version (default: always)",
    )
    importing.add_argument("--target", metavar="TARGET", help=_TARGET_HELP)
    importing.add_argument("--store", metavar="URL", help=_STORE_HELP)
    importing.add_argument("--signing-keys-file", metavar="PATH", help=_KEYS_HELP)
    importing.set_defaults(run=run_import)

    exporting = commands.add_parser(
        "export",
        help="write a version's stored bytes to a file",
        description="Write the stored bytes of a version (the served one by default) to a "
        "file, exactly as stored, and print their sha256 and serializer.",
    )
    exporting.add_argument("model", metavar="MODEL", help="the model's name (its route)")
    exporting.add_argument("key", metavar="KEY", help="the model-key")
    exporting.add_argument(
        "--version", type=int, metavar="N", help="the version (default: the served one)"
    )
    exporting.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="default: MODEL-KEY-vN.EXT here"
    )
    exporting.add_argument("--target", metavar="TARGET", help=_TARGET_HELP)
    exporting.add_argument("--store", metavar="URL", help=_STORE_HELP)
    exporting.add_argument("--signing-keys-file", metavar="PATH", help=_KEYS_HELP)
    exporting.set_defaults(run=run_export)


def _service(args: argparse.Namespace, *, create: bool) -> tuple[Service, str]:
    """A service on the store (`create`: a new SQLite file may be made, as `serve` would)."""
    url = args.store or os.environ.get(ENV_PREFIX + "STORE") or DEFAULT_STORE
    if not create:
        check_file(url)
    settings = Settings.from_env()
    models = registry(args.target or os.environ.get(ENV_PREFIX + "TARGET"))
    keys = signer(args.signing_keys_file, os.environ)
    store = open_store(url, settings)
    try:
        store.prepare()
    except BaseException:
        store.close()
        raise
    return Service(models, store, settings=settings, signer=keys), url


def run_import(args: argparse.Namespace) -> int:
    """Import FILE; 0 when stored (or already the key's newest version), 2 when refused."""
    try:
        blob = args.file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {str(args.file)!r}: {exc.strerror}") from None
    sample = _sample(args.sample) if args.sample is not None else None
    service, url = _service(args, create=True)
    imported, code = _against_store(
        service,
        url,
        lambda: service.imports.import_artifact(
            args.model,
            blob,
            serializer=args.serializer,
            key_name=args.name,
            promote=args.promote,
            sample=sample,
            allow_pickle=True,
            source="cli",
            filename=str(args.file),
        ),
        refused=(f"{args.file} not imported: ", EXIT_REFUSED),
    )
    if imported is None:
        return code
    version = imported.version
    done = "imported" if imported.created else "already stored as"
    say(
        sys.stderr,
        f"{done} {version.model} {version.key} v{version.version} "
        f"({version.serializer}, {version.size:,} bytes, sha256 {version.sha256})",
    )
    print(json.dumps(version_body(version)), flush=True)
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write a version's bytes; 0 when written, 1 for a version the store does not have."""
    service, url = _service(args, create=False)
    exported, code = _against_store(
        service,
        url,
        lambda: service.imports.export(args.model, key=args.key, version=args.version),
        refused=("", EXIT_UNKNOWN),
    )
    if exported is None:
        return code
    path = args.output or Path(exported.filename)
    try:
        path.write_bytes(exported.data)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    version = exported.version
    sha = hashlib.sha256(exported.data).hexdigest()
    say(
        sys.stderr,
        f"wrote {path} ({len(exported.data):,} bytes): {version.model} {version.key} "
        f"v{version.version}, {version.serializer}",
    )
    print(f"{sha}  {path}  {version.serializer}", flush=True)
    return 0


def _against_store(
    service: Service, url: str, call: Callable[[], T], *, refused: tuple[str, int]
) -> tuple[T | None, int]:
    """`call`'s result, or None and the exit code once its error is said; the service and
    its store are closed either way."""
    try:
        return call(), 0
    except StoreError as exc:
        say(sys.stderr, f"error: store {public_url(url)} failed: {exc}")
        return None, EXIT_UNKNOWN
    except MLServerError as exc:
        prefix, code = refused
        say(sys.stderr, f"error: {prefix}{exc}")
        return None, code
    finally:
        service.close(timeout=0)
        service.store.close()


def _sample(path: Path) -> pd.DataFrame:
    """Rows from a CSV file (with a header) or a Parquet file."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigurationError(f"no such file: {str(path)!r}") from None
    except Exception as exc:  # pandas' and pyarrow's parse errors: the file is not a table
        raise ConfigurationError(f"cannot read the sample {str(path)!r}: {exc}") from None
