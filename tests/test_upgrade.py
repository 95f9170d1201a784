"""A database made by release 0.1.0 opens with this release: every version intact, served.

`data/release-0.1.0.db` (SQLite) and `data/release-0.1.0.postgres.sql` (a pg_dump) were
written by the 0.1.0 code itself: a signed store with a key trained twice (versions 1 and 2)
and a key whose fit FAILED; the `.json` beside each holds the predictions 0.1.0 answered.
"""

from __future__ import annotations

import hashlib
import warnings

import falcon.testing
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.linear_model import LinearRegression

import test_migrations
from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore
from test_migrations import recorded, stored_rows

#: The 0.1.0 databases, on each backend (the fixture test_migrations defines).
old_url = test_migrations.old_url

SECRET = {"k1": "release-0.1.0-test-secret"}


def test_a_release_0_1_0_database_serves_every_version_it_holds(old_url: str):
    """Opened by this release, the 0.1.0 store reports its keys as they were, serves the
    same predictions, keeps every blob and its sha256, and re-signs what it loads."""
    facts = recorded(old_url)
    before = stored_rows(old_url)
    assert [row[2] for row in before.values()] == ["FINISHED", "FINISHED", "FAILED"]
    registry = Registry([wrap_estimator(LinearRegression, "linreg")])
    app = create_app(registry, SQLStore(old_url), signing_keys=SECRET)
    client = falcon.testing.TestClient(app)
    try:
        status = client.simulate_get("/linreg", params={"model-key": facts["key"]}).json
        assert (status["status"], status["version"]) == ("FINISHED", 2)
        failed = client.simulate_get("/linreg", params={"model-key": facts["failed"]}).json
        assert failed["status"] == "FAILED" and "nope" in failed["error"]
        body = {"x": facts["x"], "orient": "split", "model-key": facts["key"]}
        with warnings.catch_warnings():
            # A newer scikit-learn than the one that pickled the fixture warns on load.
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            answer = client.simulate_post("/linreg", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json["version"] == facts["version"]
        assert answer.json["y"] == facts["y"]
    finally:
        app.close()
    after = stored_rows(old_url)
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
