"""The dashboard over 10,000 keys: server time of each page, in process (no network, no
browser), on SQLite and, with --postgres, on PostgreSQL.

The floor, measured in the same run on the same store: `GET /{model}?limit=50` (the API's
JSON page of the same 50 keys), which reads what the keys page lists and renders nothing.
The keys page also counts every key by status, which the floor does not.

    python benchmarks/ui.py [--keys 10000] [--versions 3] [--postgres URL] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import falcon.testing
import orjson
import peewee
from playhouse import db_url
from sklearn.linear_model import LogisticRegression

from mlserver import Registry, create_app, wrap_estimator
from mlserver.store import SQLStore
from mlserver.store._tables import TABLE_NAME, make_version_table

MODEL = "churn"


def fill(url: str, keys: int, versions: int) -> str:
    """`keys` keys of MODEL with `versions` versions each (a tenth of them FAILED last, a
    hundredth RUNNING); returns one key that has them all."""
    db = db_url.connect(url)
    rows = make_version_table(db)
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    metrics = orjson.dumps({"validation": {"score": 0.9, "scoring": "accuracy", "rows": 100}})

    def status(i: int, version: int) -> str:
        if version < versions:
            return "FINISHED"
        return "RUNNING" if i % 100 == 0 else "FAILED" if i % 10 == 0 else "FINISHED"

    data = [
        {
            "model": MODEL,
            "key": f"{i:08d}{'ab' * 12}",
            "version": version,
            "status": status(i, version),
            "created": when,
            "started": when,
            "finished": when,
            "serializer": "joblib",
            "size": 1234,
            "metadata": "{}",
            "metrics": metrics.decode(),
            "error": "ValueError: boom" if status(i, version) == "FAILED" else None,
        }
        for i in range(keys)
        for version in range(1, versions + 1)
    ]
    with db.connection_context(), db.atomic():
        for start in range(0, len(data), 2000):
            rows.insert_many(data[start : start + 2000]).execute()
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql(f"ANALYZE {TABLE_NAME}")
    db.close()
    return data[-1]["key"]


def timed(client: falcon.testing.TestClient, path: str, repeat: int) -> tuple[float, float]:
    """Median and slowest milliseconds of `repeat` GETs of `path` (after one warm-up)."""
    first = client.simulate_get(path)
    assert first.status_code == 200, (path, first.status_code, first.text[:300])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.simulate_get(path)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def run(url: str, keys: int, versions: int, repeat: int) -> None:
    store = SQLStore(url)
    store.prepare()
    key = fill(url, keys, versions)
    app = create_app(Registry([wrap_estimator(LogisticRegression, MODEL)]), store)
    client = falcon.testing.TestClient(app)
    try:
        floor, _ = timed(client, f"/{MODEL}?limit=50", repeat)
        print(f"{url.split(':')[0]}: {keys:,} keys x {versions} versions")
        print(f"  {'floor: GET /' + MODEL + '?limit=50 (JSON)':<44} {floor:7.2f} ms")
        pages = {
            "models (counts every key)": "/ui",
            "keys, first page": f"/ui/models/{MODEL}",
            "keys, a page in the middle": f"/ui/models/{MODEL}?after={keys // 2:08d}",
            "keys, FAILED only": f"/ui/models/{MODEL}?status=FAILED",
            "keys, search": f"/ui/models/{MODEL}?q=0042",
            "a key (its versions, aliases, chart)": f"/ui/models/{MODEL}/keys/{key}",
            "jobs": "/ui/jobs",
        }
        for name, path in pages.items():
            median, slowest = timed(client, path, repeat)
            print(f"  {name:<44} {median:7.2f} ms  (max {slowest:6.2f})  {median / floor:5.2f}x")
    finally:
        app.close()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--postgres", metavar="URL", help="also measure on this (empty) database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{Path(folder) / 'models.db'}", args.keys, args.versions, args.repeat)
    if args.postgres:
        run(args.postgres, args.keys, args.versions, args.repeat)


if __name__ == "__main__":
    main()
