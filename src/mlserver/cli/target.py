"""TARGET: the registry `ml-server serve` serves, named as `module:attr` or `file.py:attr`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mlserver.errors import ConfigurationError
from mlserver.registry import Registry

__all__ = ["load_target", "registry"]


def registry(target: str | None) -> Registry:
    """What `serve` serves: TARGET's registry, or the built-in catalog without one."""
    if target:
        found = load_target(target)
    else:
        from mlserver.catalog import catalog  # NOTE: imports many estimators; only when used

        found = catalog()
    if not len(found):
        raise ConfigurationError(f"{target} has no models to serve")
    return found


def load_target(target: str) -> Registry:
    """The registry TARGET names: `package.module:attr` or `path/to/file.py:attr`.

    `attr` (dots allowed) is a Registry, a list or tuple of wrappers, or a zero-argument
    callable returning either. A module is imported as `python -m` would, with the working
    directory on sys.path; a file is imported under its own name with its directory on
    sys.path, so its wrapper classes pickle (and process pools can run their jobs).

    Raises:
        ConfigurationError: with a one-line reason, whatever went wrong.
    """
    where, colon, attribute = target.rpartition(":")
    if not colon or not where or not attribute:
        raise ConfigurationError(
            f"TARGET must be package.module:attr or path/to/file.py:attr, got {target!r}"
        )
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _import_file(Path(where))
    else:
        module = _import_module(where)
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(f"{where} has no attribute {attribute!r}") from None
    if callable(found):
        try:
            found = found()
        except Exception as exc:
            raise ConfigurationError(f"calling {target} failed: {_describe(exc)}") from exc
    if isinstance(found, Registry):
        return found
    if isinstance(found, (list, tuple)):
        return Registry(found)
    raise ConfigurationError(
        f"{target} is a {type(found).__name__}; expected a Registry, a list or tuple of model "
        "wrappers, or a function returning one"
    )


def _import_module(name: str) -> ModuleType:
    # NOTE: `python -m` and `waitress-serve` find modules in the working directory; the
    # console script does not put it on sys.path by itself.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigurationError(f"no module named {name!r}") from None
        raise ConfigurationError(f"importing {name} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise ConfigurationError(f"importing {name} failed: {_describe(exc)}") from exc


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigurationError(f"no such file: {str(path)!r}")
    path = path.resolve()
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", None) or "").resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"not a Python file: {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered under its own name, with its directory on sys.path, so pickle finds its
    # classes here and in the spawned workers of --executor process. A name already taken
    # (e.g. a file called json.py) still loads, unregistered, for the thread executor.
    registered = loaded is None and name.isidentifier()
    if registered:
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if registered:
            del sys.modules[name]
        raise ConfigurationError(f"importing {path} failed: {_describe(exc)}") from exc
    return module


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
