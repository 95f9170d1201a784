"""The runnable examples run as they are documented, and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def test_quickstart_trains_and_predicts_accurately():
    """The README's main job trains over HTTP and predicts the held-out rows well."""
    out = run("quickstart.py")
    assert "GET    -> FINISHED version 1" in out
    accuracy = float(re.search(r"accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.9


def test_custom_wrapper_records_metadata_and_predicts():
    """The custom wrapper's own metadata comes back, and records-orient predictions too."""
    out = run("custom_wrapper.py")
    coefficients = re.search(r"coefficients: \{'a': ([-\d.]+)", out)
    assert coefficients and float(coefficients.group(1)) == pytest.approx(2.0, abs=0.1)
    assert re.search(r'predictions: \[\{"price":', out)


def test_online_learning_adds_a_version_per_patch():
    """Each PATCH in the online-learning example adds a version that then serves."""
    out = run("online_learning.py")
    versions = [int(v) for v in re.findall(r"^version (\d+):", out, flags=re.MULTILINE)]
    assert versions == [1, 2, 3, 4, 5]
    final = float(re.findall(r'"0":([-\d.]+)', out)[-1])
    assert final == pytest.approx(1.0, abs=0.1)
