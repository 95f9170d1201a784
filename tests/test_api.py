"""The public names users import are exactly these."""

from __future__ import annotations

import pytest

import mlserver
import mlserver.serializers
import mlserver.store


def test_public_api_is_pinned():
    """`mlserver.__all__` is the curated list, and every name in it is importable."""
    assert sorted(mlserver.__all__) == ["ModelWrapper", "Registry", "create_app", "wrap_estimator"]
    for module in (mlserver, mlserver.serializers, mlserver.store):
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_backend_modules_export_their_contracts():
    """Serializers and stores expose the abstract contract beside the implementations."""
    assert {"Serializer", "JoblibSerializer"} <= set(mlserver.serializers.__all__)
    assert {"Store", "SQLStore", "Version", "Status"} <= set(mlserver.store.__all__)


@pytest.mark.slow
def test_importing_mlserver_has_no_side_effects():
    """Importing the package opens no database and starts no thread."""
    import subprocess
    import sys

    code = (
        "import threading, mlserver, mlserver.store, mlserver.serializers;"
        "print(threading.active_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
