"""The `ml-server` command line: its parser, its subcommands and the entry point `main`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from mlserver.cli.imports import add_parsers as add_imports
from mlserver.cli.logs import PROG, reader_gone, say
from mlserver.cli.options import SERVE_OPTIONS, add_flags
from mlserver.cli.refit import add_parser as add_refit
from mlserver.cli.serve import serve
from mlserver.cli.versions import add_parser as add_versions
from mlserver.config import settings_options
from mlserver.errors import ConfigurationError
from mlserver.version import mlserver_version

__all__ = ["main"]

log = logging.getLogger("mlserver.cli")

#: Exit code of a start-up the user can fix: bad TARGET, store URL, setting, busy port.
EXIT_USAGE = 2

_SERVE_EPILOG = f"""\
environment:
  Every option can also come from an environment variable: TARGET from MLSERVER_TARGET,
  --foo-bar from MLSERVER_FOO_BAR (e.g. MLSERVER_STORE, MLSERVER_PORT, MLSERVER_EXECUTOR,
  MLSERVER_MAX_BODY_BYTES). A flag wins over the variable, the variable over the default.

examples:
  {PROG} serve                                  the catalog on http://127.0.0.1:8080
  {PROG} serve myapp.models:registry --port 0   a registry of yours, on a free port
  {PROG} serve models.py:build --store postgresql://user:secret@db/models
  {PROG} serve myapp.models:registry --executor dask --scheduler tcp://scheduler:8786
      trains on a Dask cluster (pip install 'ml-server[dask]'); its workers need the same
      packages, and myapp importable

On SIGTERM or SIGINT the server stops accepting connections, lets in-flight requests finish
and waits for running training jobs, all within --graceful-timeout; queued jobs are FAILED
(cancelled), and jobs still running then are left RUNNING until their lease runs out (a live
server marks them interrupted). A second signal exits at once.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve and train scikit-learn-style models over REST."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {mlserver_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serving = commands.add_parser(
        "serve",
        help="serve models over HTTP",
        description="Serve a registry of models over HTTP with waitress, training on a pool.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_SERVE_EPILOG,
    )
    serving.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="package.module:attr or path/to/file.py:attr naming a Registry, a list of "
        "wrappers, or a function returning one [env MLSERVER_TARGET; default: the catalog]",
    )
    add_flags(serving, (*SERVE_OPTIONS, *settings_options()))
    serving.set_defaults(run=serve)

    listing = commands.add_parser(
        "catalog",
        help="list the built-in models",
        description="List the models `ml-server serve` offers without a TARGET.",
    )
    listing.set_defaults(run=_list_catalog)
    add_versions(commands)
    add_refit(commands)
    add_imports(commands)
    return parser


def _list_catalog(args: argparse.Namespace) -> int:
    from mlserver.catalog import ENTRIES, IMPORTED

    rows = [("NAME", "ESTIMATOR", "KIND", "PATCH")]
    rows += [(e.name, e.import_path, e.kind, e.update or "-") for e in ENTRIES]
    rows.append((IMPORTED, "(imported)", "any", "-"))
    name, estimator, kind = (max(len(row[i]) for row in rows) for i in range(3))
    for row in rows:
        print(f"{row[0]:<{name}}  {row[1]:<{estimator}}  {row[2]:<{kind}}  {row[3]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ml-server`; returns the exit code (2 for anything the user can fix at start-up,
    1 for a model-key `versions` does not find)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except ConfigurationError as exc:
        log.debug("event=startup_failed", exc_info=True)
        say(sys.stderr, f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        return 128 + signal.SIGINT
    except BrokenPipeError:  # e.g. `ml-server catalog | head -1`: the rest is not wanted
        reader_gone(sys.stdout)
        return 0
