"""The installed mlserver's version, in one place: `ml-server --version` and the service's
metadata say the same, and importing it loads nothing but the standard library."""

from __future__ import annotations

from importlib import metadata

__all__ = ["mlserver_version"]

#: The distribution name on PyPI (the import name is `mlserver`).
DISTRIBUTION = "ml-server"


def mlserver_version() -> str:
    """The installed distribution's version; "unknown" when run from an uninstalled tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
