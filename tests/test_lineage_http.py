"""Lineage over HTTP, through the client and the command line: a version's training data as
JSON and Arrow, refits and their refusals, the scopes they need, and `ml-server refit
--skewed` on a store whose versions claim an older scikit-learn."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.ipc
import pytest

import support
from mlserver.cli import main
from mlserver.config import Settings
from mlserver.http.auth import hash_token
from mlserver.inputs import Inputs, record
from mlserver.leases import worker_id
from mlserver.store import SQLStore
from support import (
    ML_SERVER,
    classification,
    in_process,
    raw_sql,
    registry,
    regression,
    server_environment,
    settled,
    train,
)

TARGET = f"{Path(support.__file__)}:registry"
TOKENS = {hash_token("ops"): ["admin"], hash_token("trainer"): ["train"]}


def test_data_answers_the_rows_a_version_learnt_from_as_json_and_arrow(store_url):
    x, y = classification(rows=40)
    with in_process(registry(), store_url) as client:
        key, state = train(client, "logreg", x, y, name="d")
        assert state["status"] == "FINISHED"
        body = client.simulate_get(f"/logreg/{key}/versions/1/data").json
        assert (body["model-key"], body["version"], body["orient"]) == (key, 1, "split")
        back = pd.read_json(io.StringIO(json.dumps(body["x"])), orient="split", precise_float=True)
        np.testing.assert_array_equal(back.to_numpy(), x.to_numpy())
        assert body["y"]["data"] == y.tolist() and body["y"]["index"] == x.index.tolist()

        arrow = client.simulate_get(
            f"/logreg/{key}/versions/1/data",
            headers={"Accept": "application/vnd.apache.arrow.stream"},
        )
        assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pyarrow.ipc.open_stream(arrow.content).read_all()
        targets = json.loads(table.schema.metadata[b"mlserver.targets"])
        assert targets == [y.name]
        frame = table.to_pandas()
        np.testing.assert_array_equal(frame[list(x.columns)].to_numpy(), x.to_numpy())
        np.testing.assert_array_equal(frame[y.name].to_numpy(), y.to_numpy())

        for path, code in (
            (f"/logreg/{key}/versions/2/data", 404),
            (f"/logreg/{'0' * 32}/versions/1/data", 404),
            (f"/logreg/{key}/versions/zero/data", 400),
            (f"/nope/{key}/versions/1/data", 404),
        ):
            answer = client.simulate_get(path)
            assert answer.status_code == code, (path, answer.text)
        assert client.simulate_get(f"/logreg/{key}/versions/1/data?orient=split").status_code == 400


def test_refit_answers_as_put_and_its_version_names_its_source(store_url):
    x, y = regression()
    with in_process(registry(), store_url) as client:
        key, _ = train(client, "linreg", x, y, name="r")
        started = client.simulate_post(f"/linreg/{key}/refit")
        assert started.status_code == 202, started.text
        assert started.json == {"model-key": key, "status": "RUNNING", "version": 2}
        assert settled(client, "linreg", key)["status"] == "FINISHED"
        second = client.simulate_get(f"/linreg/{key}/versions/2").json
        first = client.simulate_get(f"/linreg/{key}/versions/1").json
        assert second["lineage"] == {**first["lineage"], "kind": "refit", "source": 1}
        assert second["aliases"] == ["served"]
        rows = {"x": x.to_json(orient="split"), "orient": "split", "model-key": key}
        old = client.simulate_post("/linreg", json={**rows, "version": 1}).json["y"]
        assert client.simulate_post("/linreg", json=rows).json["y"] == old

        candidate = client.simulate_post(
            f"/linreg/{key}/refit", json={"version": 1, "promote": "never"}
        )
        assert candidate.status_code == 202
        assert settled(client, "linreg", key)["version"] == 3
        assert client.simulate_get(f"/linreg/{key}/aliases").json["aliases"] == {"served": 2}

        for body, code in (
            ({"version": 9}, 404),
            ({"version": "x"}, 400),
            ({"promote": "sometimes"}, 400),
            ({"epochs": 1}, 400),
        ):
            answer = client.simulate_post(f"/linreg/{key}/refit", json=body)
            assert answer.status_code == code, (body, answer.text)
        raw_sql(store_url, "UPDATE {table} SET job = NULL")
        refused = client.simulate_post(f"/linreg/{key}/refit")
        assert refused.status_code == 409 and "not stored" in refused.json["description"]
        assert client.simulate_get(f"/linreg/{key}/versions").json["versions"][0]["version"] == 3


def test_training_data_needs_admin_and_a_refit_train(sqlite_url):
    x, y = regression()
    with in_process(registry(), sqlite_url, tokens=TOKENS) as client:
        admin = {"Authorization": "Bearer ops"}
        trainer = {"Authorization": "Bearer trainer"}
        fitted = client.simulate_put(
            "/linreg", json=support.fit_body(x, y, name="auth"), headers=trainer
        )
        key = fitted.json["model-key"]
        support.wait_until(
            lambda: (
                client.simulate_get("/linreg", params={"model-key": key}, headers=trainer).json[
                    "status"
                ]
                == "FINISHED"
            )
        )
        data = f"/linreg/{key}/versions/1/data"
        assert client.simulate_get(data, headers=trainer).status_code == 403
        assert client.simulate_get(data, headers=admin).status_code == 200
        assert client.simulate_post(f"/linreg/{key}/refit", headers=admin).status_code == 403
        assert client.simulate_post(f"/linreg/{key}/refit", headers=trainer).status_code == 202


def skewed_store(url: str) -> list[str]:
    """Two linreg keys whose versions claim scikit-learn 0.24.2, and one current key."""
    x, y = regression()
    keys = []
    with in_process(registry(), url) as client:
        for name in ("old-a", "old-b", "current"):
            key, state = train(client, "linreg", x, y, name=name)
            assert state["status"] == "FINISHED"
            keys.append(key)
    store = SQLStore(url)
    try:
        for key in keys[:2]:
            version = store.version("linreg", key, 1)
            metadata = dict(version.metadata)
            metadata["libraries"] = {**metadata["libraries"], "scikit-learn": "0.24.2"}
            raw_sql(
                url,
                "UPDATE {table} SET metadata = ? WHERE id = ?",
                (json.dumps(metadata), version.id),
            )
    finally:
        store.close()
    return keys


def test_refit_skewed_lists_then_refits_then_finds_nothing(store_url, capsys):
    keys = skewed_store(store_url)
    args = ["refit", "--skewed", TARGET, "--store", store_url, "--model", "linreg"]
    assert main([*args, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    listed = sorted(line.split()[1] for line in out.splitlines())
    assert listed == sorted(keys[:2])
    assert "trained with scikit-learn 0.24.2" in out and "2 key(s) to refit" in err
    store = SQLStore(store_url)
    try:
        assert [store.newest("linreg", k).version for k in keys] == [1, 1, 1]  # dry: nothing

        assert main(args) == 0
        out, err = capsys.readouterr()
        assert sorted(out.splitlines()) == sorted(f"linreg {k} v1 -> v2 FINISHED" for k in keys[:2])
        assert "refit 1/2: linreg" in err and "refitted 2 of 2 key(s)" in err
        assert [store.resolve("linreg", k).version for k in keys] == [2, 2, 1]
        refitted = store.version("linreg", keys[0], 2)
        assert refitted.lineage["kind"] == "refit" and refitted.lineage["source"] == 1

        assert main(args) == 0
        out, err = capsys.readouterr()
        assert out == "" and "refitted 0 of 0 key(s)" in err
    finally:
        store.close()


def test_refit_skewed_says_which_keys_it_could_not_refit(sqlite_url, capsys):
    keys = skewed_store(sqlite_url)
    raw_sql(sqlite_url, "UPDATE {table} SET job = NULL")
    assert main(["refit", "--skewed", TARGET, "--store", sqlite_url]) == 1
    out, err = capsys.readouterr()
    assert sorted(out.splitlines()) == sorted(
        f"linreg {k} v1: not refitted: version 1 of {k!r} cannot be refitted: the data it "
        "learnt from is not stored (trained before lineage, too large, with "
        "store_training_data off, or updated from an imported version)"
        for k in keys[:2]
    )
    assert "refitted 0 of 2 key(s), 2 not" in err


@pytest.mark.slow
def test_the_console_script_refits_from_the_store_it_is_given(sqlite_url):
    keys = skewed_store(sqlite_url)
    env = server_environment({"MLSERVER_STORE": sqlite_url, "MLSERVER_TARGET": TARGET})
    done = subprocess.run(
        [*ML_SERVER, "refit", "--skewed"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        f"linreg {k} v1 -> v2 FINISHED" for k in keys[:2]
    )


def test_refit_skewed_goes_on_after_an_interrupted_run(sqlite_url, capsys):
    """A refit an interrupted run left RUNNING (its process gone) is run again when the next
    run starts, and that run waits for it instead of starting another."""
    keys = skewed_store(sqlite_url)
    store = SQLStore(sqlite_url)
    try:
        served = store.version("linreg", keys[0], 1)
        child = subprocess.Popen(["true"])
        child.wait()
        host, namespace = worker_id().split(":")[:2]
        gone = f"{host}:{namespace}:{child.pid}:0ff1ce00"
        left = store.claim("linreg", keys[0], worker=gone, lease_seconds=60, retrain=True)
        job = {**served.job, "kind": "refit", "promote": "always"}
        lineage = {**served.lineage, "kind": "refit", "source": 1}
        inputs = Inputs(lineage, job, steps=store.steps(served.id))
        record(store, Settings(), left.version, inputs)

        assert main(["refit", "--skewed", TARGET, "--store", sqlite_url]) == 0
        out, _ = capsys.readouterr()
        # keys[0] is listed only if its re-run had not finished when the run looked.
        lines = set(out.splitlines())
        assert f"linreg {keys[1]} v1 -> v2 FINISHED" in lines
        assert lines <= {f"linreg {k} v1 -> v2 FINISHED" for k in keys[:2]}
        again = store.version("linreg", keys[0], 2)
        assert (again.id, again.attempts) == (left.version.id, 2)
        assert store.newest("linreg", keys[0]).version == 2  # no third version was started
    finally:
        store.close()


def test_refit_skewed_signs_what_it_stores_in_a_signed_store(sqlite_url, tmp_path, capsys):
    """A signed server serves the versions `ml-server refit` stored with its keys."""
    secret = "0123456789abcdef0123456789abcdef"
    x, y = regression()
    with in_process(registry(), sqlite_url, signing_keys={"k1": secret}) as client:
        key, state = train(client, "linreg", x, y, name="signed")
        assert state["status"] == "FINISHED"
    store = SQLStore(sqlite_url)
    try:
        first = store.version("linreg", key, 1)
    finally:
        store.close()
    metadata, row = dict(first.metadata), first.id
    metadata["libraries"] = {**metadata["libraries"], "scikit-learn": "0.24.2"}
    raw_sql(sqlite_url, "UPDATE {table} SET metadata = ? WHERE id = ?", (json.dumps(metadata), row))
    keys = tmp_path / "keys"
    keys.write_text(f"k1:{secret}\n")
    args = ["refit", "--skewed", TARGET, "--store", sqlite_url, "--signing-keys-file", str(keys)]
    assert main(args) == 0, capsys.readouterr().err
    assert f"linreg {key} v1 -> v2 FINISHED" in capsys.readouterr().out
    with in_process(registry(), sqlite_url, signing_keys={"k1": secret}) as client:
        body = {"model-key": key, "x": x.to_json(orient="split"), "orient": "split"}
        answer = client.simulate_post("/linreg", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json["version"] == 2
