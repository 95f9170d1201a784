"""How schema-2.db was made: run with the release before stored training data on the path
(commit 5e6738c), e.g. `git worktree add /tmp/rel2 5e6738c && PYTHONPATH=/tmp/rel2/src python
make_schema_2.py schema-2.db`. A SQLite store at schema version 2 with an online key fitted and
updated twice, an alias `baseline` on its first version, and a FAILED key; the predictions it
answered go into schema-2.db.json.

The PostgreSQL twin: pass an emptied database's URL and the JSON's path, e.g.
`python make_schema_2.py postgresql://postgres@127.0.0.1/scratch schema-2.postgres.json`, then
`pg_dump --inserts --no-owner --no-privileges postgresql://postgres@127.0.0.1/scratch >
schema-2.postgres.sql`."""

import json
import sys
import time

import falcon.testing
from sklearn.linear_model import SGDRegressor

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore

out = sys.argv[1]
url, facts_path = (out, sys.argv[2]) if "://" in out else (f"sqlite:///{out}", out + ".json")
app = create_app(
    Registry([wrap_estimator(SGDRegressor, "sgd", update="partial_fit")]), SQLStore(url)
)
cl = falcon.testing.TestClient(app)
x = {
    "columns": ["a", "b"],
    "index": [0, 1, 2, 3],
    "data": [[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]],
}
y = {"name": "t", "index": [0, 1, 2, 3], "data": [1.5, 2.0, 4.5, 5.0]}
body = {"x": x, "y": y, "orient": "split", "modkwargs": {"random_state": 0}}


def wait(key):
    for _ in range(500):
        s = cl.simulate_get("/sgd", params={"model-key": key}).json
        if s["status"] != "RUNNING":
            return s
        time.sleep(0.02)


k = cl.simulate_put("/sgd", json=body).json["model-key"]
wait(k)
for _ in range(2):
    cl.simulate_patch("/sgd", json={"x": x, "y": y, "orient": "split", "model-key": k})
    wait(k)
cl.simulate_put(f"/sgd/{k}/aliases/baseline", json={"version": 1})
bad = cl.simulate_put("/sgd", json={**body, "algkwargs": {"nope": 1}}).json["model-key"]
wait(bad)
answer = cl.simulate_post("/sgd", json={"x": x, "orient": "split", "model-key": k}).json
first = cl.simulate_post(
    "/sgd", json={"x": x, "orient": "split", "model-key": k, "version": 1}
).json
with open(facts_path, "w") as recorded:
    facts = {
        "key": k,
        "failed": bad,
        "x": x,
        "y": answer["y"],
        "version": answer["version"],
        "y_1": first["y"],
    }
    json.dump(facts, recorded, indent=1)
app.close()
