"""Stored training data: what keeping a fit's data costs, in bytes and in seconds.

For a 1M x 10 float64 frame with an integer label (the fit of `serve.py`'s ingest case) and a
more compressible one of the same shape (values with two decimals, a few categories as
strings), measures the bytes in memory, as a JSON body and as stored, and the seconds a job
spends storing it (content digest, encoding, `Store.record_inputs`) and reading it back. The
floor, measured in the same run on the same database: the frame's raw bytes written as one
dataset, unencoded (what any store of the data pays at least).

    python benchmarks/lineage.py [--rows 1000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlserver.config import Settings
from mlserver.frames import stored
from mlserver.inputs import record
from mlserver.lineage import fit_inputs
from mlserver.store import SQLStore
from mlserver.store.base import StoredData

JOB = {"modkwargs": {}, "algkwargs": {}, "validation": None, "scoring": None}
JOB |= {"promote": "always", "name": None}


def frames(rows: int) -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(10)]
    normal = pd.DataFrame(rng.normal(size=(rows, 10)), columns=columns)
    label = pd.Series((normal["f0"] > 0).astype(int), name="label")
    tidy = pd.DataFrame(np.round(rng.uniform(0, 100, size=(rows, 8)), 2), columns=columns[:8])
    tidy["region"] = rng.choice(["north", "south", "east", "west"], size=rows)
    tidy["plan"] = rng.choice(["free", "pro", "team"], size=rows)
    churned = pd.Series(rng.integers(0, 2, size=rows), name="churned")
    return {"normal floats": (normal, label), "rounded + categories": (tidy, churned)}


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def in_memory(x: pd.DataFrame, y: pd.Series) -> int:
    return int(x.memory_usage(deep=True).sum() + y.memory_usage(deep=True))


def measure(url: str, name: str, x: pd.DataFrame, y: pd.Series) -> None:
    store = SQLStore(url)
    try:
        store.prepare()
        raw = in_memory(x, y)
        body = len(x.to_json(orient="split")) + len(y.to_json(orient="split"))

        # The floor: the raw column bytes, written as one dataset without any encoding.
        floor_blob = b"".join(x[c].to_numpy().tobytes() for c in x.columns) + y.to_numpy().tobytes()
        floor = store.claim(
            "bench", f"floor-{name}", worker="bench", lease_seconds=600, retrain=True
        )
        plain = StoredData(
            sha256=hashlib.sha256(floor_blob).hexdigest(),
            blob=floor_blob,
            checksum=hashlib.sha256(floor_blob).hexdigest(),
            format="raw",
            rows=len(x),
            columns=x.shape[1],
            raw_bytes=raw,
        )
        floor_s, _ = timed(
            lambda: store.record_inputs(
                floor.version.id,
                lineage={},
                job=JOB,
                steps=(plain.sha256,),
                datasets=(plain,),
            )
        )

        digest_s, _ = timed(lambda: stored.content_digest(x, y))
        encode_s, encoded = timed(lambda: stored.encode(x, y))
        claim = store.claim("bench", f"fit-{name}", worker="bench", lease_seconds=600, retrain=True)
        record_s, sha = timed(
            lambda: record(store, Settings(), claim.version, fit_inputs(x, y, JOB))
        )
        before = store.data_usage()
        again = store.claim(
            "bench", f"again-{name}", worker="bench", lease_seconds=600, retrain=True
        )
        dedupe_s, _ = timed(lambda: record(store, Settings(), again.version, fit_inputs(x, y, JOB)))
        assert store.data_usage() == before, "the same content was stored twice"
        read_s, found = timed(lambda: store.load_dataset(sha))
        decode_s, (x_back, y_back) = timed(lambda: stored.decode(found.blob))
        assert x_back.equals(x) and y_back.equals(y), "the stored data came back different"

        backend = "PostgreSQL" if url.startswith("postgres") else "SQLite"
        mb = 1e6
        print(f"\n{name}, {len(x):,} x {x.shape[1]} + label, {backend}")
        print(f"  in memory {raw / mb:.1f} MB, JSON body {body / mb:.1f} MB, ", end="")
        print(f"stored {len(encoded.blob) / mb:.1f} MB ({len(encoded.blob) / raw:.2f} of memory)")
        print(f"  digest {digest_s:.3f} s, encode {encode_s:.3f} s (on its own)")
        print(
            f"  storing it in a job {record_s:.3f} s = {record_s / floor_s:.2f}x the floor ", end=""
        )
        print(f"({floor_s:.3f} s to write its raw bytes)")
        print(f"  the same content for another version {dedupe_s:.3f} s (stored once)")
        print(f"  reading it back {read_s:.3f} s + decoding {decode_s:.3f} s")
    finally:
        for kind in ("floor", "fit", "again"):  # and with the last version, its dataset
            store.delete("bench", f"{kind}-{name}")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="also measure on this (emptied) database")
    args = parser.parse_args()
    urls = [f"sqlite:///{Path(tempfile.mkdtemp(prefix='mlserver-lineage-')) / 'models.db'}"]
    if args.postgres:
        urls.append(args.postgres)
    for name, (x, y) in frames(args.rows).items():
        for url in urls:
            measure(url, name, x, y)


if __name__ == "__main__":
    main()
