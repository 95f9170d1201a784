"""A database made by release 0.1.0 opens with this release: every version intact, served.

`data/release-0.1.0.db` was written by the 0.1.0 code itself: a signed SQLite store with a
key trained twice (versions 1 and 2) and a key whose fit FAILED; the `.json` beside it holds
the predictions 0.1.0 answered.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import falcon.testing
import pytest
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.linear_model import LinearRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore

DATA = Path(__file__).parent / "data"
SECRET = {"k1": "release-0.1.0-test-secret"}


def _rows(path: Path) -> dict[int, tuple]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT id, key, version, status, sha256, blob, signature, metadata, error "
            "FROM mlserver_versions"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    path = tmp_path / "models.db"
    shutil.copy(DATA / "release-0.1.0.db", path)
    return path


def test_a_release_0_1_0_database_serves_every_version_it_holds(old_database: Path):
    """Opened by this release, the 0.1.0 store reports its keys as they were, serves the
    same predictions, keeps every blob and its sha256, and re-signs what it loads."""
    recorded = json.loads((DATA / "release-0.1.0.db.json").read_text())
    before = _rows(old_database)
    assert [row[2] for row in before.values()] == ["FINISHED", "FINISHED", "FAILED"]
    registry = Registry([wrap_estimator(LinearRegression, "linreg")])
    app = create_app(registry, SQLStore(f"sqlite:///{old_database}"), signing_keys=SECRET)
    client = falcon.testing.TestClient(app)
    try:
        status = client.simulate_get("/linreg", params={"model-key": recorded["key"]}).json
        assert (status["status"], status["version"]) == ("FINISHED", 2)
        failed = client.simulate_get("/linreg", params={"model-key": recorded["failed"]}).json
        assert failed["status"] == "FAILED" and "nope" in failed["error"]
        body = {"x": recorded["x"], "orient": "split", "model-key": recorded["key"]}
        with warnings.catch_warnings():
            # A newer scikit-learn than the one that pickled the fixture warns on load.
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            answer = client.simulate_post("/linreg", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json["version"] == recorded["version"]
        assert answer.json["y"] == recorded["y"]
    finally:
        app.close()
    after = _rows(old_database)
    assert after.keys() == before.keys()
    for row_id, row in after.items():
        # Everything but the signature (position 5) as 0.1.0 wrote it.
        assert row[:5] + row[6:] == before[row_id][:5] + before[row_id][6:]
        sha256, blob = row[3], row[4]
        if blob is not None:
            assert hashlib.sha256(blob).hexdigest() == sha256
    # The served version's 0.1.0 signature was replaced by one bound to its row; the
    # version nobody loaded keeps its old one.
    assert after[2][5].startswith("k1:v2:") and not before[2][5].startswith("k1:v2:")
    assert after[1][5] == before[1][5]
