"""ModelClient's registry calls against `ml-server serve` in its own process, on SQLite and
PostgreSQL: history a page at a time, roll-back by moving `served`, candidates, promotion by
validation score, prequential scores, cancel, paged keys and the errors of each."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

import conftest
from mlserver.client import (
    BadRequest,
    Conflict,
    Forbidden,
    ModelClient,
    NotFound,
    NotRunning,
    TrainingFailed,
)
from mlserver.http.auth import hash_token
from support import ServerProcess, classification, regression, wait_until


@pytest.fixture(scope="module", params=conftest.BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[ServerProcess]:
    """One server per backend for the whole module; each test uses keys of its own names."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'models.db'}"
    else:
        url = conftest._postgres()
    process = ServerProcess(url)
    yield process
    process.stop()


@pytest.fixture
def name() -> str:
    """A key name no other test uses."""
    return f"k-{uuid.uuid4().hex}"


def client_of(server: ServerProcess, model: str) -> ModelClient:
    return ModelClient(server.url, model)


def test_moving_served_rolls_predictions_back_and_forward(server, name):
    """Version 2 serves after its fit; set_alias("served", 1) makes predictions version 1's
    again, and moving it back restores version 2's."""
    x, y = regression()
    with client_of(server, "linreg") as client:
        key = client.fit(x, y, name=name)
        first = client.predict(x, key)
        assert client.fit(x, -y, name=name, retrain=True) == key
        second = client.predict(x, key)
        assert second.attrs["version"] == 2
        assert not np.allclose(first, second)
        assert client.aliases(key) == {"served": 2}

        assert client.set_alias(key, "served", 1) == {
            "model-key": key,
            "alias": "served",
            "version": 1,
        }
        rolled = client.predict(x, key)
        assert rolled.attrs["version"] == 1
        np.testing.assert_array_equal(rolled, first)
        assert client.status(key)["version"] == 2  # GET still reports the newest version
        assert [(v["version"], v["aliases"]) for v in client.versions(key)] == [
            (2, []),
            (1, ["served"]),
        ]

        client.set_alias(key, "served", 2)
        np.testing.assert_array_equal(client.predict(x, key), second)


def test_a_candidate_is_not_served_until_promoted(server, name):
    """promote="never" stores a FINISHED candidate that predicts only when asked by version
    or alias; its metrics say why, and moving `served` promotes it."""
    x, y = regression()
    with client_of(server, "linreg") as client:
        key = client.fit(x, y, name=name)
        served = client.predict(x, key)
        client.fit(x, -y, name=name, retrain=True, promote="never")
        assert client.predict(x, key).attrs["version"] == 1
        np.testing.assert_array_equal(client.predict(x, key), served)
        candidate = client.predict(x, key, version=2)
        assert candidate.attrs["version"] == 2
        np.testing.assert_allclose(candidate, -served, atol=1e-9)

        v2 = client.version(key, 2)
        assert v2["status"] == "FINISHED" and v2["aliases"] == []
        assert v2["metrics"]["promoted"] is False
        assert "never" in v2["metrics"]["reason"]
        assert client.version(key, 1)["metrics"]["promoted"] is True

        client.set_alias(key, "challenger", 2)
        assert client.predict(x, key, alias="challenger").attrs["version"] == 2
        client.set_alias(key, "served", 2)
        assert client.predict(x, key).attrs["version"] == 2
        assert client.aliases(key) == {"challenger": 2, "served": 2}
        assert client.delete_alias(key, "challenger")["deleted"] == 1
        assert client.aliases(key) == {"served": 2}


def test_versions_pages_lazily_newest_first(server, name):
    """With page_size=2, five versions come newest first in three pages, each asked for
    only when the iteration reaches it."""
    x, y = regression(rows=20)
    with client_of(server, "linreg") as client:
        key = client.fit(x, y, name=name)
        for _ in range(4):
            client.fit(x, y, name=name, retrain=True)
        pages: list[str] = []
        client._session.hooks["response"].append(
            lambda response, *args, **kwargs: pages.append(response.url)
        )
        versions = client.versions(key, page_size=2)
        assert [v["version"] for v in itertools.islice(versions, 2)] == [5, 4]
        assert len(pages) == 1 and "limit=2" in pages[0] and "before" not in pages[0]
        assert [v["version"] for v in versions] == [3, 2, 1]
        assert len(pages) == 3 and "before=4" in pages[1] and "before=2" in pages[2]
        assert [v["version"] for v in client.versions(key)] == [5, 4, 3, 2, 1]


def test_keys_come_in_pages_and_filter_by_status(server):
    """keys() gathers every page in ascending key order; iter_keys follows `next` with
    page_size=2; status= keeps only keys whose newest version has it."""
    x, y = regression(rows=20)
    with client_of(server, "sgd") as client:
        keys = sorted(client.fit(x, y, name=f"paging-{i}-{uuid.uuid4().hex}") for i in range(5))
        failed = client.fit(
            x, y, name=f"bad-{uuid.uuid4().hex}", algkwargs={"epochs": 1}, wait=False
        )
        wait_until(lambda: client.status(failed)["status"] == "FAILED")
        listed = [k["model-key"] for k in client.keys(status=None)]
        assert listed == sorted(listed) and set(keys) | {failed} <= set(listed)
        paged = [k["model-key"] for k in client.iter_keys(page_size=2)]
        assert paged == listed
        finished = [k["model-key"] for k in client.keys(status="FINISHED")]
        assert set(keys) <= set(finished) and failed not in finished
        assert failed in [k["model-key"] for k in client.keys(status="FAILED")]


def test_cancel_stops_a_running_fit_and_its_result_is_never_stored(server, name):
    """cancel() on a slow fit answers cancelled; the version is FAILED ("cancelled") and
    stays so after the fit would have ended; a finished version is not cancelled."""
    x, y = regression(rows=20)
    with client_of(server, "slow") as client:
        key = client.fit(x, y, name=name, algkwargs={"seconds": 1.5}, wait=False)
        assert client.status(key)["status"] == "RUNNING"
        answer = client.cancel(key)
        assert answer == {
            "model-key": key,
            "version": 1,
            "deleted": 0,
            "cancelled": True,
            "status": "FAILED",
        }
        state = client.status(key)
        assert state["status"] == "FAILED" and "cancelled" in state["error"]
        time.sleep(2.0)  # the fit has returned by now: its model must not be stored
        assert client.version(key, 1)["status"] == "FAILED"
        assert client.aliases(key) == {}
        with pytest.raises(NotRunning) as raised:
            client.cancel(key)
        assert raised.value.version == 1

        key2 = client.fit(x, y, name=f"{name}-done", algkwargs={"seconds": 0})
        with pytest.raises(NotRunning):
            client.cancel(key2, version=1)
        assert client.version(key2, 1)["status"] == "FINISHED"  # nothing was deleted


def test_validation_scores_and_if_better_keeps_the_better_version(server, name):
    """fit(validation=, scoring=) stores the held-out score; a worse fit with
    promote="if-better" is stored but not served, a better one is."""
    x, y = classification(rows=120)
    with client_of(server, "logreg") as client:
        key = client.fit(x, y, name=name, validation=0.25, scoring="accuracy")
        first = client.version(key, 1)["metrics"]["validation"]
        assert first["scoring"] == "accuracy" and first["rows"] == 30
        assert first["score"] > 0.8
        # Labels unrelated to x: the held-out accuracy drops, so it is not promoted.
        noise = y.sample(frac=1.0, random_state=3).set_axis(y.index)
        client.fit(
            x, noise, name=name, retrain=True, validation=0.25, scoring="accuracy",
            promote="if-better",
        )  # fmt: skip
        worse = client.version(key, 2)
        assert worse["metrics"]["validation"]["score"] < first["score"]
        assert worse["metrics"]["promoted"] is False and worse["aliases"] == []
        assert client.predict(x, key).attrs["version"] == 1
        client.fit(
            x, y, name=name, retrain=True, validation=0.25, scoring="accuracy",
            promote="if-better",
        )  # fmt: skip
        assert client.version(key, 3)["metrics"]["promoted"] is True
        assert client.aliases(key) == {"served": 3}


def test_update_scores_prequentially_and_can_stay_a_candidate(server, name):
    """update() with y stores the served version's score on the new rows before it learned
    them; with promote="never" the update is a candidate and served stays."""
    x, y = regression(rows=80)
    with client_of(server, "sgd") as client:
        key = client.fit(x[:40], y[:40], name=name, modkwargs={"random_state": 0})
        version = client.update(x[40:], y[40:], key, promote="never")
        assert version == 2
        updated = client.version(key, 2)
        assert updated["metrics"]["prequential"]["rows"] == 40
        assert updated["metrics"]["promoted"] is False
        assert updated["lineage"]["kind"] == "update" and updated["lineage"]["parent"] == 1
        assert client.predict(x, key).attrs["version"] == 1


def test_refusals_are_typed_and_change_nothing(server, name):
    """Deleting the served version or the served alias is a Conflict, unknown versions and
    aliases are NotFound, bad new parameters are a BadRequest naming them."""
    x, y = regression(rows=20)
    with client_of(server, "linreg") as client:
        key = client.fit(x, y, name=name)
        with pytest.raises(Conflict):
            client.delete_version(key, 1)
        with pytest.raises(Conflict):
            client.delete_alias(key, "served")
        with pytest.raises(NotFound):
            client.set_alias(key, "served", 7)
        with pytest.raises(NotFound):
            client.version(key, 7)
        with pytest.raises(NotFound):
            client.predict(x, key, alias="nobody")
        with pytest.raises(NotFound):
            client.delete_alias(key, "nobody")
        with pytest.raises(BadRequest) as both:
            client.predict(x, key, version=1, alias="served")
        assert both.value.parameter in {"version", "alias"}
        for options, parameter in [
            ({"promote": "sometimes"}, "promote"),
            ({"validation": 0.9}, "validation"),
            ({"scoring": "no-such-scorer"}, "scoring"),
        ]:
            with pytest.raises(BadRequest) as raised:
                client.fit(x, y, name=name, retrain=True, **options)
            assert raised.value.parameter == parameter
        with pytest.raises(NotFound):
            list(client.versions(f"{name}-none"))
        assert [v["version"] for v in client.versions(key)] == [1]
        assert client.aliases(key) == {"served": 1}

        client.fit(x, -y, name=name, retrain=True, promote="never")
        assert client.delete_version(key, 2) == {"model-key": key, "version": 2, "deleted": 1}
        assert [v["version"] for v in client.versions(key)] == [1]

        with pytest.raises(TrainingFailed) as training:
            client.fit(x, y, name=name, retrain=True, algkwargs={"epochs": 1})
        broken = training.value.version
        with pytest.raises(Conflict) as failed:
            client.predict(x, key, version=broken)
        assert failed.value.status == "FAILED"
        with pytest.raises(Conflict):
            client.set_alias(key, "served", broken)
        assert client.aliases(key) == {"served": 1}


def test_tokens_read_with_predict_and_move_aliases_with_train(tmp_path, name):
    """A predict token reads the history and aliases but cannot move an alias (Forbidden);
    a predict and train token can."""
    x, y = regression(rows=20)
    reader, trainer = "reader-token", "trainer-token"
    tokens = f"{hash_token(reader)} predict;{hash_token(trainer)} predict,train"
    server = ServerProcess(f"sqlite:///{tmp_path / 'models.db'}", "--tokens", tokens)
    try:
        with ModelClient(server.url, "linreg", token=trainer) as training:
            key = training.fit(x, y, name=name)
            training.fit(x, -y, name=name, retrain=True, promote="never")
            with ModelClient(server.url, "linreg", token=reader) as reading:
                assert [v["version"] for v in reading.versions(key)] == [2, 1]
                assert reading.aliases(key) == {"served": 1}
                with pytest.raises(Forbidden):
                    reading.set_alias(key, "served", 2)
                with pytest.raises(Forbidden):
                    reading.delete_version(key, 2)
                assert reading.predict(x, key).attrs["version"] == 1
            training.set_alias(key, "served", 2)
            assert training.predict(x, key).attrs["version"] == 2
    finally:
        server.stop()


def test_data_gives_back_the_rows_and_refit_trains_them_again(server, name):
    """`data` returns a version's x and y (as JSON and as Arrow); `refit` waits for the new
    version, whose lineage names its source; an unknown version is NotFound."""
    x, y = regression()
    with client_of(server, "linreg") as client:
        key = client.fit(x, y, name=name)
        for arrow in (False, True):
            got_x, got_y = client.data(key, 1, arrow=arrow)
            np.testing.assert_array_equal(got_x.to_numpy(), x.to_numpy())
            assert list(got_x.columns) == list(x.columns)
            np.testing.assert_array_equal(got_y.to_numpy(), y.to_numpy())
        state = client.refit(key)
        assert state["status"] == "FINISHED" and state["version"] == 2
        assert client.version(key, 2)["lineage"]["source"] == 1
        with pytest.raises(NotFound):
            client.data(key, 5)
        with pytest.raises(NotFound):
            client.refit(key, version=5)
