"""The runnable examples run as they are documented, and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import unsigned_quiet

# Every example runs as a script in its own process, most with servers.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def run(name: str) -> str:
    """Run `python examples/<name>` from the repository root, as the docs say; its stdout."""
    done = subprocess.run(
        [sys.executable, f"examples/{name}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The one warning every example server gives: it signs nothing (docs/security.md).
    assert unsigned_quiet(done.stderr) == "", done.stderr
    return done.stdout


def test_every_example_has_a_test():
    """Each runnable script in examples/ is run by a test in this module."""
    scripts = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_")}
    tested = set(re.findall(r'run\("(\w+\.py)"\)', Path(__file__).read_text()))
    assert scripts == tested


def test_quickstart_trains_and_predicts_accurately():
    """The README's main job trains through the client and predicts the held-out rows well."""
    out = run("quickstart.py")
    assert re.search(r"^fit     -> model-key [0-9a-f]{32}, FINISHED version 1$", out, re.M)
    predictions = re.search(r"^predict -> (\d+) predictions, accuracy (\d\.\d+)$", out, re.M)
    assert predictions and int(predictions.group(1)) == 100
    assert float(predictions.group(2)) > 0.9
    assert re.search(r"^fit \+ predict round trip over HTTP: \d+ ms$", out, re.M)
    assert len(out.splitlines()) == 4  # short enough to read at a glance


def test_raw_http_trains_by_name_and_reports_precision():
    """Plain requests with to_json strings train, poll to FINISHED, predict, and score well."""
    out = run("raw_http.py")
    assert re.search(r"^PUT  202 -> model-key [0-9a-f]{32}, RUNNING$", out, re.M)
    assert re.search(r"^GET  200 -> FINISHED version 1 after \d+\.\d s$", out, re.M)
    assert "POST 200 -> 143 predictions" in out
    precision = re.search(r"^precision (\d\.\d+)$", out, re.M)
    assert precision and float(precision.group(1)) > 0.85


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


def test_replicas_share_models_and_train_on_dask():
    """A model trained through one replica on the Dask cluster is served by the other, and back."""
    out = run("replicas.py")
    assert re.search(r"^dask scheduler: tcp://127\.0\.0\.1:\d+, 2 workers$", out, re.M)
    assert re.search(r"^served by B: version 1, accuracy (\d\.\d+)$", out, re.M)
    accuracy = float(re.search(r"accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.9
    assert "retrained through B: version 2" in out
    assert "served by A: version 2" in out


def test_bulk_arrow_trains_and_scores_as_arrow():
    """500k training rows and 10k scored rows as Arrow; the ONNX answers agree with
    scikit-learn's own predictions."""
    out = run("bulk_arrow.py")
    assert re.search(
        r"^PUT  500000 rows as Arrow \(\d+ MiB\) -> 202 in \d+ ms, model-key [0-9a-f]{32}$",
        out,
        re.M,
    )
    assert re.search(r"^GET  FINISHED version 1$", out, re.M)
    agreement = re.search(
        r"^POST 10000 predictions as Arrow, agreement with scikit-learn (\S+)$", out, re.M
    )
    assert agreement and float(agreement.group(1)) >= 0.999
    assert re.search(r"^10,000 rows per request: Arrow [\d.]+ ms, JSON [\d.]+ ms", out, re.M)


def test_registry_keeps_the_better_version_and_rolls_back():
    """A worse refit is kept but not served, a candidate serves once `served` moves to it,
    moving `served` back rolls back, and a running fit is cancelled."""
    out = run("registry.py")
    assert re.search(r"^candidate: version 3, \[[01, ]+\]$", out, re.M)
    history = re.findall(r"^version (\d) FINISHED (\[[^]]*\]) (\S+): (.*)$", out, re.M)
    assert [(v, aliases) for v, aliases, _, _ in history] == [
        ("3", "[]"),
        ("2", "[]"),
        ("1", "['served']"),
    ]
    scores = {v: score for v, _, score, _ in history}
    assert float(scores["1"]) > 0.9 and float(scores["2"]) < float(scores["1"])
    assert scores["3"] == "-"  # fitted without validation
    reasons = {v: reason for v, _, _, reason in history}
    assert reasons["2"].startswith("validation score ") and "a candidate" in reasons["2"]
    assert reasons["3"].startswith("promote=never")
    assert "served after promoting: version 3" in out
    assert "served after rolling back: version 1" in out
    assert "aliases: {'served': 1}" in out
    assert re.search(r"^cancelled version 1: cancelled", out, re.M)


def test_lineage_reads_a_versions_data_back_and_refits_its_history():
    """Each version names its data and parent; the rows of version 2 come back as sent; the
    refit of fit, update, update answers exactly as version 3 did."""
    out = run("lineage.py")
    kinds = re.findall(
        r"^version (\d): (\w+) of 200 rows, parent (\w+), data [0-9a-f]{12}$", out, re.M
    )
    assert kinds == [("3", "update", "2"), ("2", "update", "1"), ("1", "fit", "None")]
    assert "version 2 learnt from 200 rows, the ones sent: True" in out
    assert re.search(r"^refit: version 4 FINISHED, refit of version 3$", out, re.M)
    assert "refit answers as the history did: True" in out


def test_import_model_serves_and_exports_models_trained_elsewhere():
    """A skops file and an ONNX graph imported over HTTP answer as their estimator, the
    export gives the same bytes, junk and pickles are refused and store nothing."""
    out = run("import_model.py")
    assert re.search(r"^imported skops: version 1, lineage import, scikit-learn \S+$", out, re.M)
    assert "skops answers as the estimator: True" in out
    assert re.search(
        r"^onnx labels as the estimator: True; probabilities within 1e-0[6-9]$", out, re.M
    )
    assert "exported version 1: the same bytes: True" in out
    assert "junk refused: 400; keys stored: 2" in out
    assert "pickle refused over HTTP: 415" in out


def test_v2_clients_serves_a_pipeline_to_tritonclient():
    """tritonclient reads the metadata (a BYTES and an FP64 input), predicts with binary
    tensors as the pipeline does, and version pins and aliases pick what answers."""
    out = run("v2_clients.py")
    assert "inputs: plan BYTES, usage FP64" in out
    assert "outputs: predict, predict_proba, decision_function" in out
    assert re.search(r"^version 1: labels as the pipeline's: True, probabilities within", out, re.M)
    assert "model_version '1' answered version 1" in out
    assert "model_version 'candidate' answered version 2" in out
    assert "model_version '(served)' answered version 1" in out


def test_dashboard_fills_a_server_and_every_page_answers():
    """The dashboard example trains keys, fails one, leaves one running, and every page it
    lists answers 200 with HTML."""
    out = run("dashboard.py")
    lines = re.findall(r"^(\w+)\s+(\d{3})\s+(\d+) bytes  (http://\S+)$", out, re.M)
    assert [(name, status) for name, status, _, _ in lines] == [
        (name, "200") for name in ("models", "keys", "key", "version", "jobs", "live", "confirm")
    ]
    assert all(int(size) > 1000 for _, _, size, _ in lines)
