"""The model registry over HTTP, on SQLite and PostgreSQL: a key's history a page at a time,
aliases and roll-back, promotion with real validation scores, prequential scores on PATCH,
cancel, retention and the paged key listing."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import time

import joblib
import numpy as np
import pandas as pd
import psutil
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import train_test_split

from mlserver import Registry
from mlserver.frames import stored
from mlserver.frames.keys import name_key
from mlserver.frames.orients import decode_training
from mlserver.http.auth import hash_token
from mlserver.pool import ProcessPool
from mlserver.scoring import seed_of
from mlserver.store import SQLStore
from support import (
    ML_SERVER,
    Endless,
    Slow,
    assert_startup_error,
    classification,
    fit_body,
    in_process,
    predict,
    predictions,
    raw_sql,
    registry,
    regression,
    request,
    server_environment,
    settled,
    status,
    train,
    wait_until,
)


def models() -> Registry:
    found = registry()
    found.register(Endless)
    return found


@pytest.fixture
def client(store_url):
    with in_process(models(), store_url) as client:
        yield client


def get(client, path: str, **params):
    return client.simulate_get(path, params=params or None)


def retrain(client, model: str, name: str, x, y, **params) -> dict:
    """A new version of the named key, waited for; its status body."""
    _, done = train(client, model, x, y, name=name, retrain=True, **params)
    assert done["status"] == "FINISHED", done
    return done


def history(client, model: str, key: str, **params) -> dict:
    response = get(client, f"/{model}/{key}/versions", **params)
    assert response.status_code == 200, response.text
    return response.json


def shifted(x: pd.DataFrame, y: pd.Series, by: float) -> tuple[pd.DataFrame, pd.Series]:
    return x, (y + by).round(6)


# -- history -------------------------------------------------------------------------------


def test_the_history_pages_newest_first_with_every_field(client):
    """Five versions, two a page: 5 4 | 3 2 | 1, `next` the `before` of the next page and
    null on the last; each V carries the status body plus serializer, size, sha256,
    aliases, metrics, lineage and attempts, and GET versions/{n} answers the same V."""
    x, y = regression()
    for by in range(5):
        done = retrain(client, "linreg", "hist", *shifted(x, y, by))
    key = done["model-key"]
    pages, before = [], None
    while True:
        page = history(client, "linreg", key, limit=2, **({"before": before} if before else {}))
        assert (page["model"], page["model-key"]) == ("linreg", key)
        pages.append([v["version"] for v in page["versions"]])
        before = page["next"]
        if before is None:
            break
    assert pages == [[5, 4], [3, 2], [1]]
    newest = history(client, "linreg", key)["versions"][0]
    assert newest == get(client, f"/linreg/{key}/versions/5").json
    assert newest["aliases"] == ["served"] and newest["attempts"] == 1
    assert newest["serializer"] == "joblib" and newest["size"] > 0 and len(newest["sha256"]) == 64
    assert newest["metrics"]["promoted"] is True
    x5, y5 = shifted(x, y, 4)
    rows, target = decode_training(
        x5.to_json(orient="split"), y5.to_json(orient="split"), "split", max_rows=100,
        max_columns=10,
    )  # fmt: skip
    assert newest["lineage"] == {
        "data": stored.content_digest(rows.frame, target),
        "rows": len(x),
        "columns": 2,
        "parent": None,
        "kind": "fit",
        "source": None,
    }
    status_body = status(client, "linreg", key)
    assert {k: newest[k] for k in status_body} == status_body
    older = get(client, f"/linreg/{key}/versions/4").json
    assert older["aliases"] == [] and older["metrics"]["promoted"] is True


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"before": "-1"}, "before"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_history_parameters_are_400s_naming_them(client, params, parameter):
    x, y = regression()
    key = retrain(client, "linreg", "bad-history", x, y)["model-key"]
    response = get(client, f"/linreg/{key}/versions", **params)
    assert response.status_code == 400, response.text
    assert response.json["parameter"] == parameter


def test_unknown_models_keys_and_versions_are_404s(client):
    x, y = regression()
    key = retrain(client, "linreg", "known", x, y)["model-key"]
    assert get(client, f"/nope/{key}/versions").status_code == 404
    assert get(client, "/linreg/nokey/versions").status_code == 404
    assert get(client, f"/linreg/{key}/versions/9").status_code == 404
    assert get(client, "/linreg/nokey/aliases").status_code == 404
    assert get(client, f"/linreg/{key}/versions/zero").json["parameter"] == "version"


# -- aliases and roll-back -----------------------------------------------------------------


def test_moving_served_rolls_back_what_predict_answers(client):
    """Two versions on different data: predict answers with v2 until `served` moves to v1,
    then exactly what v1's estimator predicts; GET status still reports the newest."""
    x, y = regression()
    retrain(client, "linreg", "roll", x, y)
    key = retrain(client, "linreg", "roll", *shifted(x, y, 10.0))["model-key"]
    first = LinearRegression().fit(x, y).predict(x)
    second = LinearRegression().fit(x, y + 10.0).predict(x)
    assert np.allclose(predictions(predict(client, "linreg", key, x)), second)
    moved = client.simulate_put(f"/linreg/{key}/aliases/served", json={"version": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json == {"model-key": key, "alias": "served", "version": 1}
    answered = predict(client, "linreg", key, x)
    assert answered.json["version"] == 1
    assert np.allclose(predictions(answered), first, rtol=0, atol=1e-9)
    assert status(client, "linreg", key)["version"] == 2
    assert get(client, f"/linreg/{key}/aliases").json == {
        "model-key": key,
        "aliases": {"served": 1},
    }


def test_predict_takes_a_version_or_an_alias(client):
    x, y = regression()
    retrain(client, "linreg", "pick", x, y)
    key = retrain(client, "linreg", "pick", *shifted(x, y, 5.0))["model-key"]
    first = LinearRegression().fit(x, y).predict(x)
    assert (
        client.simulate_put(f"/linreg/{key}/aliases/champion", json={"version": 1}).json["version"]
        == 1
    )
    for params in ({"version": 1}, {"alias": "champion"}, {"version": "1"}):
        answered = predict(client, "linreg", key, x, **params)
        assert answered.status_code == 200, answered.text
        assert answered.json["version"] == 1
        assert np.allclose(predictions(answered), first, rtol=0, atol=1e-9)
    assert predict(client, "linreg", key, x, version=1, alias="champion").status_code == 400
    assert predict(client, "linreg", key, x, version=3).status_code == 404
    assert predict(client, "linreg", key, x, alias="nobody").status_code == 404
    assert predict(client, "linreg", key, x, version=0).json["parameter"] == "version"
    assert predict(client, "linreg", key, x, alias="a b").json["parameter"] == "alias"


def test_alias_refusals_change_nothing(client, store_url):
    """An alias at a FAILED or missing version, a bad name, removing `served` and deleting
    an aliased version are refused with their codes, and the aliases stay as they were."""
    x, y = regression()
    key = retrain(client, "linreg", "guarded", x, y)["model-key"]
    failed = request(
        client,
        "PUT",
        "linreg",
        json=fit_body(x, y, name="guarded", retrain=True, algkwargs={"nope": 1}),
    )
    assert failed.status_code == 202
    assert settled(client, "linreg", key)["status"] == "FAILED"
    before = get(client, f"/linreg/{key}/aliases").json
    refused = client.simulate_put(f"/linreg/{key}/aliases/served", json={"version": 2})
    assert refused.status_code == 409 and refused.json["status"] == "FAILED"
    assert client.simulate_put(f"/linreg/{key}/aliases/x", json={"version": 7}).status_code == 404
    assert client.simulate_put(f"/linreg/{key}/aliases/x", json={}).json["parameter"] == "version"
    assert (
        client.simulate_put(f"/linreg/{key}/aliases/x", json={"version": 1, "n": 2}).json[
            "parameter"
        ]
        == "n"
    )
    assert (
        client.simulate_put(
            f"/linreg/{key}/aliases/x", body="{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert client.simulate_put(f"/linreg/{key}/aliases/-x", json={"version": 1}).status_code == 400
    assert client.simulate_delete(f"/linreg/{key}/aliases/served").status_code == 409
    assert client.simulate_delete(f"/linreg/{key}/aliases/ghost").status_code == 404
    aliased = client.simulate_delete(f"/linreg/{key}/versions/1")
    assert aliased.status_code == 409, aliased.text
    assert get(client, f"/linreg/{key}/aliases").json == before
    assert [v["version"] for v in history(client, "linreg", key)["versions"]] == [2, 1]


def test_an_unaliased_version_can_be_deleted_and_an_alias_removed(client):
    x, y = regression()
    retrain(client, "linreg", "prune", x, y)
    key = retrain(client, "linreg", "prune", *shifted(x, y, 1.0))["model-key"]
    client.simulate_put(f"/linreg/{key}/aliases/old", json={"version": 1})
    assert client.simulate_delete(f"/linreg/{key}/aliases/old").json == {
        "model-key": key,
        "alias": "old",
        "deleted": 1,
    }
    deleted = client.simulate_delete(f"/linreg/{key}/versions/1")
    assert deleted.json == {"model-key": key, "version": 1, "deleted": 1}
    assert [v["version"] for v in history(client, "linreg", key)["versions"]] == [2]
    assert get(client, f"/linreg/{key}/versions/1").status_code == 404


# -- promotion and scores ------------------------------------------------------------------


def test_promote_never_keeps_a_candidate_out_of_service(client):
    x, y = regression()
    retrain(client, "linreg", "cand", x, y)
    done = retrain(client, "linreg", "cand", *shifted(x, y, 3.0), promote="never")
    key = done["model-key"]
    assert predict(client, "linreg", key, x).json["version"] == 1
    candidate = get(client, f"/linreg/{key}/versions/2").json
    assert candidate["metrics"]["promoted"] is False and "never" in candidate["metrics"]["reason"]
    assert candidate["aliases"] == []
    client.simulate_put(f"/linreg/{key}/aliases/served", json={"version": 2})
    assert predict(client, "linreg", key, x).json["version"] == 2


def test_the_first_version_is_served_whatever_promote_says(client):
    x, y = regression()
    key, done = train(client, "linreg", x, y, name="first", promote="never")
    assert done["status"] == "FINISHED"
    assert predict(client, "linreg", key, x).json["version"] == 1
    assert get(client, f"/linreg/{key}/versions/1").json["metrics"]["promoted"] is True


def _held_out(x, y, key: str, fraction: float, stratify: bool):
    return train_test_split(
        x,
        y,
        test_size=fraction,
        random_state=seed_of(key) % 2**32,
        stratify=y if stratify else None,
    )


def test_validation_scores_equal_scikit_learns_and_if_better_gates_promotion(client):
    """A classifier with validation=0.25 stores the accuracy scikit-learn finds on the same
    held-out rows; a retrain on shuffled labels scores lower and if-better keeps the first
    served; a better one with if-better is promoted."""
    x, y = classification(rows=200)
    key = name_key("gate")
    done = retrain(client, "logreg", "gate", x, y, validation=0.25, scoring="accuracy")
    metrics = get(client, f"/logreg/{key}/versions/1").json["metrics"]
    x_fit, x_val, y_fit, y_val = _held_out(x, y, key, 0.25, stratify=True)
    expected = get_scorer("accuracy")(LogisticRegression().fit(x_fit, y_fit), x_val, y_val)
    assert metrics["validation"] == {"score": expected, "scoring": "accuracy", "rows": 50}
    noise = pd.Series(
        np.random.default_rng(5).permutation(y.to_numpy()), index=y.index, name=y.name
    )
    done = retrain(
        client, "logreg", "gate", x, noise, validation=0.25, scoring="accuracy", promote="if-better"
    )
    worse = get(client, f"/logreg/{key}/versions/2").json["metrics"]
    assert worse["validation"]["score"] < expected
    assert worse["promoted"] is False, worse
    assert predict(client, "logreg", key, x).json["version"] == 1
    retrain(
        client, "logreg", "gate", x, y, validation=0.25, scoring="accuracy", promote="if-better"
    )
    better = get(client, f"/logreg/{key}/versions/3").json["metrics"]
    assert better["validation"]["score"] == expected and better["promoted"] is True
    assert predict(client, "logreg", key, x).json["version"] == 3
    assert done["status"] == "FINISHED"


def test_default_scoring_is_the_estimators_own_score(client):
    x, y = regression(rows=80)
    key = name_key("own")
    retrain(client, "linreg", "own", x, y, validation=0.5)
    metrics = get(client, f"/linreg/{key}/versions/1").json["metrics"]
    x_fit, x_val, y_fit, y_val = _held_out(x, y, key, 0.5, stratify=False)
    expected = LinearRegression().fit(x_fit, y_fit).score(x_val, y_val)
    assert metrics["validation"] == {"score": expected, "scoring": "score", "rows": 40}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"promote": "sometimes"}, "promote"),
        ({"validation": 0.9}, "validation"),
        ({"validation": 0}, "validation"),
        ({"validation": True}, "validation"),
        ({"validation": 0.2, "scoring": "accuracy_score"}, "scoring"),
        ({"scoring": 3}, "scoring"),
    ],
)
def test_bad_promotion_parameters_are_400s_and_store_nothing(client, params, parameter):
    x, y = regression()
    response = request(client, "PUT", "linreg", json=fit_body(x, y, name="never", **params))
    assert response.status_code == 400, response.text
    assert response.json["parameter"] == parameter
    assert get(client, "/linreg").json["keys"] == []


def test_a_patch_scores_the_served_version_on_its_rows_before_it_learns(client, store_url):
    """Prequential: the update's metrics hold the base's score on the new rows (what the
    base model itself scores there), and the new version's lineage names its parent."""
    x, y = regression(rows=80)
    key, done = train(client, "sgd", x, y, name="online", modkwargs={"random_state": 0})
    assert done["status"] == "FINISHED"
    new_x, new_y = regression(rows=30, seed=9)
    patched = request(client, "PATCH", "sgd", json=fit_body(new_x, new_y, **{"model-key": key}))
    assert patched.status_code == 202, patched.text
    assert settled(client, "sgd", key)["status"] == "FINISHED"
    store = SQLStore(store_url)
    try:
        base = joblib.load(io.BytesIO(store.load_blob(store.version("sgd", key, 1))))
    finally:
        store.close()
    update = get(client, f"/sgd/{key}/versions/2").json
    assert update["metrics"]["prequential"] == {
        "score": base.score(new_x, new_y),
        "scoring": "score",
        "rows": 30,
    }
    assert update["lineage"]["kind"] == "update" and update["lineage"]["parent"] == 1
    assert update["aliases"] == ["served"]


def test_a_patch_updates_the_served_version_not_the_newest(client):
    """After a roll-back to v1, a PATCH builds on v1: its base_version is 1."""
    x, y = regression(rows=80)
    key, _ = train(client, "sgd", x, y, name="rolled", modkwargs={"random_state": 0})
    retrain(client, "sgd", "rolled", *shifted(x, y, 50.0), modkwargs={"random_state": 0})
    client.simulate_put(f"/sgd/{key}/aliases/served", json={"version": 1})
    patched = request(
        client, "PATCH", "sgd", json=fit_body(x, y, **{"model-key": key}, promote="never")
    )
    assert patched.status_code == 202, patched.text
    assert settled(client, "sgd", key)["status"] == "FINISHED"
    third = get(client, f"/sgd/{key}/versions/3").json
    assert third["lineage"]["parent"] == 1 and third["metrics"]["promoted"] is False
    assert get(client, f"/sgd/{key}/aliases").json["aliases"] == {"served": 1}


# -- cancel and retention ------------------------------------------------------------------


def test_cancelling_a_running_fit_fails_it_and_stores_nothing(client, store_url):
    x, y = regression()
    body = fit_body(x, y, name="cancel", algkwargs={"seconds": 1.0})
    response = request(client, "PUT", "slow", json=body)
    key = response.json["model-key"]
    cancelled = client.simulate_delete(f"/slow/{key}/versions/1")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json == {
        "model-key": key,
        "version": 1,
        "deleted": 0,
        "cancelled": True,
        "status": "FAILED",
    }
    assert status(client, "slow", key)["error"] == "cancelled"
    time.sleep(1.5)  # the thread's fit returns: its result is discarded
    after = get(client, f"/slow/{key}/versions/1").json
    assert (after["status"], after["error"], after["size"]) == ("FAILED", "cancelled", None)
    assert raw_sql(store_url, "SELECT blob FROM {table} WHERE key = ?", (key,)) == [(None,)]
    again = request(
        client, "PUT", "slow", json=fit_body(x, y, name="cancel", algkwargs={"seconds": 0})
    )
    assert again.status_code == 202 and again.json["version"] == 2


@pytest.mark.slow
def test_cancel_on_the_process_pool_kills_the_jobs_process(sqlite_url, tmp_path):
    pool = ProcessPool(1)
    pool.submit(exec, "import support").result(timeout=60)
    mark = tmp_path / "pid"
    x, y = regression()
    with in_process(Registry([Endless, Slow]), sqlite_url, executor=pool) as client:
        body = fit_body(x, y, algkwargs={"mark": str(mark)})
        key = request(client, "PUT", "endless", json=body).json["model-key"]
        pid = int(wait_until(lambda: mark.exists() and mark.read_text(), timeout=30))
        assert psutil.pid_exists(pid) and pid != os.getpid()
        assert client.simulate_delete(f"/endless/{key}/versions/1").json["cancelled"] is True
        wait_until(lambda: not psutil.pid_exists(pid), timeout=10)
        assert status(client, "endless", key)["error"] == "cancelled"
        assert pool.submit(os.getpid).result(timeout=60) not in (pid, os.getpid())
    pool.shutdown()


def test_keep_versions_prunes_the_oldest_but_never_an_aliased_one(store_url):
    x, y = regression()
    with in_process(models(), store_url, keep_versions=2) as client:
        retrain(client, "linreg", "kept", x, y)
        key = name_key("kept")
        client.simulate_put(f"/linreg/{key}/aliases/pinned", json={"version": 1})
        for by in (1.0, 2.0, 3.0):
            retrain(client, "linreg", "kept", *shifted(x, y, by))
        listed = history(client, "linreg", key)["versions"]
        assert [(v["version"], v["aliases"]) for v in listed] == [
            (4, ["served"]),
            (3, []),
            (1, ["pinned"]),
        ]


# -- key listing ---------------------------------------------------------------------------


def test_the_key_listing_pages_in_key_order_and_filters_by_status(client):
    x, y = regression()
    names = [f"k{i}" for i in range(5)]
    for name in names:
        retrain(client, "linreg", name, x, y)
    failed = request(
        client, "PUT", "linreg", json=fit_body(x, y, name="bad", algkwargs={"nope": 1})
    )
    settled(client, "linreg", failed.json["model-key"])
    keys = sorted([name_key(n) for n in names] + [failed.json["model-key"]])
    seen, after = [], None
    while True:
        page = get(client, "/linreg", limit=4, **({"after": after} if after else {})).json
        seen += [k["model-key"] for k in page["keys"]]
        after = page["next"]
        if after is None:
            break
    assert seen == keys
    finished = get(client, "/linreg", status="FINISHED").json
    assert [k["model-key"] for k in finished["keys"]] == sorted(name_key(n) for n in names)
    assert finished["next"] is None
    assert [k["model-key"] for k in get(client, "/linreg", status="FAILED").json["keys"]] == [
        failed.json["model-key"]
    ]
    for params, parameter in (
        ({"limit": "0"}, "limit"),
        ({"status": "DONE"}, "status"),
        ({"limit": "2", "model-key": keys[0]}, "limit"),
    ):
        refused = get(client, "/linreg", **params)
        assert refused.status_code == 400 and refused.json["parameter"] == parameter


def _many_keys(store_url: str, count: int) -> list[str]:
    """`count` FINISHED keys written straight into the versions table (a bulk insert, as
    training ten thousand models would take too long)."""
    keys = [f"bulk-{i:05d}" for i in range(count)]
    values = ", ".join(
        f"('linreg', '{k}', 1, '{'FINISHED' if i % 3 else 'FAILED'}', '2026-01-01 00:00:00', "
        "'{{}}')"
        for i, k in enumerate(keys)
    )
    raw_sql(store_url, "SELECT 1 FROM {table} LIMIT 1")  # the table exists by now
    raw_sql(
        store_url,
        "INSERT INTO {table} (model, key, version, status, created, metadata) VALUES " + values,
    )
    return keys


def test_paging_ten_thousand_keys_answers_every_page_and_stays_bounded(client, store_url):
    """10,000 keys, 1,000 a page: every key once, in order; the default listing stops at
    1,000 and says `next`; the FINISHED filter pages the same way. The slowest page is
    reported, and bounded well below a client's timeout."""
    get(client, "/linreg")  # the app starts, the schema exists
    keys = _many_keys(store_url, 10_000)
    default = get(client, "/linreg").json
    assert len(default["keys"]) == 1000 and default["next"] == keys[999]
    seen, after, slowest = [], None, 0.0
    while True:
        started = time.perf_counter()
        page = get(
            client, "/linreg", limit=1000, status="FINISHED", **({"after": after} if after else {})
        ).json
        slowest = max(slowest, time.perf_counter() - started)
        assert "keys" in page, page
        seen += [k["model-key"] for k in page["keys"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [k for i, k in enumerate(keys) if i % 3]
    assert slowest < 5.0, slowest


# -- replicas and scopes -------------------------------------------------------------------


def test_two_replicas_agree_on_served_within_freshness(postgres_url):
    """An alias moved through one app is what the other predicts with within
    freshness_seconds (both share one PostgreSQL)."""
    x, y = regression()
    with (
        in_process(models(), postgres_url, freshness_seconds=0.5) as one,
        in_process(models(), postgres_url, freshness_seconds=0.5) as two,
    ):
        retrain(one, "linreg", "shared", x, y)
        key = retrain(one, "linreg", "shared", *shifted(x, y, 4.0))["model-key"]
        assert predict(two, "linreg", key, x).json["version"] == 2
        one.simulate_put(f"/linreg/{key}/aliases/served", json={"version": 1})
        moved = time.monotonic()
        wait_until(lambda: predict(two, "linreg", key, x).json["version"] == 1, timeout=5)
        assert time.monotonic() - moved < 0.5 + 1.0


def test_reading_needs_predict_and_changing_needs_train(sqlite_url):
    tokens = {hash_token("p"): "predict", hash_token("t"): "train"}
    x, y = regression()
    with in_process(models(), sqlite_url, tokens=tokens) as client:
        trainer = {"Authorization": "Bearer t"}
        reader = {"Authorization": "Bearer p"}
        key = request(client, "PUT", "linreg", json=fit_body(x, y), headers=trainer).json[
            "model-key"
        ]
        wait_until(
            lambda: (
                client.simulate_get(f"/linreg/{key}/versions/1", headers=reader).json["status"]
                == "FINISHED"
            )
        )
        assert client.simulate_get(f"/linreg/{key}/versions", headers=reader).status_code == 200
        assert client.simulate_get(f"/linreg/{key}/aliases", headers=reader).status_code == 200
        for verb, path in (
            ("PUT", f"/linreg/{key}/aliases/x"),
            ("DELETE", f"/linreg/{key}/aliases/x"),
            ("DELETE", f"/linreg/{key}/versions/1"),
        ):
            denied = client.simulate_request(verb, path, json={"version": 1}, headers=reader)
            assert denied.status_code == 403, (verb, path)
        allowed = client.simulate_put(
            f"/linreg/{key}/aliases/x", json={"version": 1}, headers=trainer
        )
        assert allowed.status_code == 200
        assert client.simulate_get(f"/linreg/{key}/versions").status_code == 401


def test_every_history_route_is_in_the_openapi_document(client):
    paths = get(client, "/openapi.json").json["paths"]
    for route in ("versions", "versions/{n}", "aliases", "aliases/{alias}"):
        assert f"/linreg/{{key}}/{route}" in paths
    put_params = paths["/linreg"]["put"]["requestBody"]["content"]["application/json"]
    assert put_params["schema"]["$ref"].endswith("FitRequest")
    schemas = get(client, "/openapi.json").json["components"]["schemas"]
    assert {"promote", "validation", "scoring"} <= set(schemas["FitRequest"]["properties"])
    assert {"version", "alias"} <= set(schemas["PredictRequest"]["properties"])


def test_a_cancel_through_another_replica_drops_the_job_where_it_runs(postgres_url):
    """Replica two cancels a fit replica one runs: the version is FAILED "cancelled" at
    once, and replica one's heartbeat finds it and lets the job go (its result discarded)."""
    x, y = regression()
    quick = {"heartbeat_seconds": 0.2, "lease_seconds": 5.0}
    with (
        in_process(models(), postgres_url, **quick) as one,
        in_process(models(), postgres_url, **quick) as two,
    ):
        body = fit_body(x, y, name="far", algkwargs={"seconds": 2.0})
        key = request(one, "PUT", "slow", json=body).json["model-key"]
        jobs = one.app.service.jobs
        assert jobs.running == 1
        assert two.simulate_delete(f"/slow/{key}/versions/1").json["cancelled"] is True
        wait_until(lambda: jobs.running == 0, timeout=1.5)  # before the fit could end
        time.sleep(2.5)  # the thread's fit returns; nothing is stored
        after = get(one, f"/slow/{key}/versions/1").json
        assert (after["status"], after["error"], after["size"]) == ("FAILED", "cancelled", None)


@pytest.mark.slow
def test_a_server_refuses_a_database_from_a_newer_release_at_start_up(tmp_path):
    """`ml-server serve` on a database whose schema version is above this release's exits
    with one line naming both versions, before it listens, and leaves the database as it
    was."""
    path = tmp_path / "models.db"
    store = SQLStore(f"sqlite:///{path}")
    store.prepare()
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE mlserver_schema SET version = 4")
    done = subprocess.run(
        [*ML_SERVER, "serve", "--store", f"sqlite:///{path}", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_environment(),
    )
    assert_startup_error(done, "database schema version 4 is newer than this mlserver's (3)")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM mlserver_schema").fetchall() == [(4,)]
