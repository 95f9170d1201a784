"""How release-0.1.0.db was made: run with release 0.1.0 on the path, e.g.
`git worktree add /tmp/rel 088ab62 && PYTHONPATH=/tmp/rel/src python make_release_0_1_0.py
release-0.1.0.db`. A signed SQLite store with a key trained twice and a FAILED key; the
predictions 0.1.0 answered go into release-0.1.0.db.json.

The PostgreSQL twin: pass an emptied database's URL and the JSON's path, e.g.
`python make_release_0_1_0.py postgresql://postgres@127.0.0.1/scratch
release-0.1.0.postgres.json`, then `pg_dump --inserts --no-owner --no-privileges
postgresql://postgres@127.0.0.1/scratch > release-0.1.0.postgres.sql`."""

import json
import sys
import time

import falcon.testing
from sklearn.linear_model import LinearRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore

out = sys.argv[1]
url, facts_path = (out, sys.argv[2]) if "://" in out else (f"sqlite:///{out}", out + ".json")
app = create_app(
    Registry([wrap_estimator(LinearRegression, "linreg")]),
    SQLStore(url),
    signing_keys={"k1": "release-0.1.0-test-secret"},
)
cl = falcon.testing.TestClient(app)
x = {
    "columns": ["a", "b"],
    "index": [0, 1, 2, 3],
    "data": [[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]],
}
y = {"name": "t", "index": [0, 1, 2, 3], "data": [1.5, 2.0, 4.5, 5.0]}
k = cl.simulate_put("/linreg", json={"x": x, "y": y, "orient": "split"}).json["model-key"]


def wait(key):
    for _ in range(500):
        s = cl.simulate_get("/linreg", params={"model-key": key}).json
        if s["status"] != "RUNNING":
            return s
        time.sleep(0.02)


wait(k)
cl.simulate_put("/linreg", json={"x": x, "y": y, "orient": "split", "retrain": True})
s = wait(k)
bad = cl.simulate_put(
    "/linreg", json={"x": x, "y": y, "orient": "split", "algkwargs": {"nope": 1}}
).json["model-key"]
wait(bad)
answer = cl.simulate_post("/linreg", json={"x": x, "orient": "split", "model-key": k}).json
with open(facts_path, "w") as recorded:
    facts = {"key": k, "failed": bad, "x": x, "y": answer["y"], "version": answer["version"]}
    json.dump(facts, recorded, indent=1)
app.close()
