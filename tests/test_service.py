"""The use cases without HTTP: Service on a real store with real estimators."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest
from sklearn.linear_model import LinearRegression

from mlserver import Registry
from mlserver.config import Settings
from mlserver.errors import (
    InvalidPayload,
    KeyNotFound,
    NotReady,
    SchemaMismatch,
    UnsupportedOperation,
)
from mlserver.service import Service
from mlserver.store import SQLStore, Status
from support import Slow, registry, regression, wait_until


@pytest.fixture
def service(sqlite_url):
    service = Service(registry(), SQLStore(sqlite_url), settings=Settings(model_cache_size=2))
    yield service
    service.close()


def finished(service: Service, model: str, key: str):
    version = wait_until(
        lambda: (v := service.status(model, key=key)).status is not Status.RUNNING and v
    )
    assert version.status is Status.FINISHED, version.error
    return version


def fit(service: Service, model: str = "linreg", **params):
    x, y = regression()
    claim = service.fit(
        model, x=x.to_json(orient="split"), y=y.to_json(orient="split"), orient="split", **params
    )
    return claim, x, y


def test_fit_then_predict_matches_estimator(service):
    """fit returns a created claim; predict gives the estimator's values, as text like x."""
    claim, x, y = fit(service)
    assert claim.created and claim.version.status is Status.RUNNING
    finished(service, "linreg", claim.version.key)
    result = service.predict(
        "linreg", key=claim.version.key, x=x.to_json(orient="split"), orient="split"
    )
    assert result.version == 1 and isinstance(result.y, str)
    body = orjson.loads(result.y)
    assert body["columns"] == ["target"] and body["index"] == list(x.index)
    np.testing.assert_array_equal(
        [row[0] for row in body["data"]], LinearRegression().fit(x, y).predict(x)
    )


def test_predict_full_float_precision(service):
    """Predictions keep all 17 significant digits (pandas to_json would keep 10)."""
    claim, x, y = fit(service)
    finished(service, "linreg", claim.version.key)
    result = service.predict("linreg", key=claim.version.key, x=orjson.loads(x.to_json()))
    values = list(result.y["target"].values())
    assert values == LinearRegression().fit(x, y).predict(x).tolist()


def test_predict_states(service):
    """predict: KeyNotFound for an unknown key, NotReady(RUNNING) while training."""
    x, _ = regression()
    with pytest.raises(KeyNotFound):
        service.predict("linreg", key="nope", x=x.to_json())
    claim, x, _ = fit(service, "slow", algkwargs={"seconds": 0.5})
    with pytest.raises(NotReady) as running:
        service.predict("slow", key=claim.version.key, x=x.to_json())
    assert running.value.status == "RUNNING"
    finished(service, "slow", claim.version.key)


def test_own_retrain_and_delete_are_seen_at_once(service):
    """This process serves its own new version, and 404s a deleted key, without waiting."""
    x, y = regression()
    claim = service.fit(
        "slow", x=x.to_json(), y=y.to_json(), key_name="n", algkwargs={"seconds": 0}
    )
    finished(service, "slow", claim.version.key)
    key = claim.version.key
    assert service.predict("slow", key=key, x=x.to_json()).version == 1
    service.fit(
        "slow", x=x.to_json(), y=y.to_json(), key_name="n", algkwargs={"seconds": 0}, retrain=True
    )
    wait_until(lambda: service.jobs.running == 0)  # recorded, so this process knows
    assert service.predict("slow", key=key, x=x.to_json()).version == 2
    service.delete("slow", key=key)
    with pytest.raises(KeyNotFound):
        service.predict("slow", key=key, x=x.to_json())


def test_model_is_loaded_once_per_version(service):
    """Concurrent first predicts deserialize a version once; later ones hit the cache."""
    claim, x, _ = fit(service)
    finished(service, "linreg", claim.version.key)
    barrier = threading.Barrier(6)
    errors = []

    def ask():
        barrier.wait()
        try:
            service.predict("linreg", key=claim.version.key, x=x.to_json())
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (service.cache.misses, service.cache.hits) == (1, 5)


def test_cache_is_bounded(service):
    """The cache never holds more versions than model_cache_size."""
    x, y = regression()
    keys = []
    for i in range(3):
        claim = service.fit("linreg", x=x.to_json(), y=y.to_json(), key_name=f"m{i}")
        keys.append(claim.version.key)
        finished(service, "linreg", claim.version.key)
        service.predict("linreg", key=claim.version.key, x=x.to_json())
    assert len(service.cache) == 2 and service.cache.misses == 3


class RacingStore(SQLStore):
    """A real store on which, just before the first update is claimed, another process's
    retrain of the same key finishes (a race the claim must not lose)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url, self.raced = url, False

    def claim_update(self, model, key, **kwargs):
        if not self.raced:
            self.raced = True
            other = Service(registry(), SQLStore(self.url))
            try:
                fit(other, model, retrain=True)
                finished(other, model, key)
            finally:
                other.close()
        return super().claim_update(model, key, **kwargs)


def test_an_update_checks_again_when_its_base_is_overtaken(sqlite_url):
    """A version that finishes between an update's checks and its claim becomes the base:
    the update is checked against it and started on it, not on the one read first."""
    service = Service(registry(), RacingStore(sqlite_url))
    try:
        claim, x, y = fit(service, "sgd")
        key = claim.version.key
        finished(service, "sgd", key)
        version = service.update("sgd", key=key, x=x.to_json(), y=y.to_json())
        assert service.store.raced and version.version == 3
        assert finished(service, "sgd", key).metadata["base_version"] == 2
    finally:
        service.close()


def test_update_requires_support_and_matching_schema(service):
    """update: 405-style refusal without support, schema checked before anything is stored."""
    claim, x, y = fit(service)
    finished(service, "linreg", claim.version.key)
    with pytest.raises(UnsupportedOperation) as refused:
        service.update("linreg", key=claim.version.key, x=x.to_json(), y=y.to_json())
    assert "update" not in refused.value.supported
    sgd, x, y = fit(service, "sgd")
    finished(service, "sgd", sgd.version.key)
    with pytest.raises(SchemaMismatch, match="'u'"):
        service.update(
            "sgd", key=sgd.version.key, x=x.rename(columns={"u": "w"}).to_json(), y=y.to_json()
        )
    assert service.status("sgd", key=sgd.version.key).version == 1
    version = service.update("sgd", key=sgd.version.key, x=x.to_json(), y=y.to_json())
    assert version.version == 2
    assert finished(service, "sgd", sgd.version.key).metadata["base_version"] == 1


def test_bad_parameters_store_nothing(service):
    """Rejected fits (bad kwargs, flags, names, orients) leave the store empty."""
    x, y = regression()
    for params, exc in [
        ({"modkwargs": {"nope": 1}}, InvalidPayload),
        ({"modkwargs": "[1]"}, InvalidPayload),
        ({"retrain": 3}, InvalidPayload),
        ({"key_name": ""}, InvalidPayload),
        ({"orient": "diagonal"}, InvalidPayload),
    ]:
        with pytest.raises(exc):
            service.fit("linreg", x=x.to_json(), y=y.to_json(), **params)
    assert service.lifecycle.keys("linreg").items == []


def test_kwargs_as_json_text_are_accepted(service):
    """modkwargs sent as JSON text (as older clients did) equal the object form."""
    x, y = regression()
    as_text = service.fit(
        "linreg", x=x.to_json(), y=y.to_json(), modkwargs='{"fit_intercept": false}'
    )
    as_object = service.fit(
        "linreg", x=x.to_json(), y=y.to_json(), modkwargs={"fit_intercept": False}
    )
    assert as_text.version.key == as_object.version.key and not as_object.created
    meta = finished(service, "linreg", as_text.version.key).metadata
    assert meta["kwargs"] == {"modkwargs": {"fit_intercept": False}, "algkwargs": {}}


def test_fit_returning_none_stores_the_model_fitted_in_place(sqlite_url):
    """A wrapper whose fit returns None (fitting in place) still stores the fitted model."""

    class InPlace(Slow):
        name = "in-place"

        def fit(self, model, x, y=None, **algkwargs):
            model.fit(x, y)

    service = Service(Registry([InPlace]), SQLStore(sqlite_url))
    try:
        x, y = regression()
        key = service.fit("in-place", x=x.to_json(), y=y.to_json()).version.key
        finished(service, "in-place", key)
        result = service.predict("in-place", key=key, x=orjson.loads(x.to_json()))
        expected = LinearRegression().fit(x, y).predict(x)
        np.testing.assert_allclose(list(result.y["y"].values()), expected)
    finally:
        service.close()


def test_close_fails_queued_jobs_and_finishes_running_ones(sqlite_url):
    """On close, the running job ends FINISHED and a queued one is recorded FAILED."""
    service = Service(registry(), SQLStore(sqlite_url), settings=Settings(training_threads=1))
    x, y = regression()
    running = service.fit(
        "slow", x=x.to_json(), y=y.to_json(), key_name="a", algkwargs={"seconds": 0.5}
    )
    queued = service.fit(
        "slow", x=x.to_json(), y=y.to_json(), key_name="b", algkwargs={"seconds": 0}
    )
    service.close()
    store = service.store
    assert store.newest("slow", running.version.key).status is Status.FINISHED
    cancelled = store.newest("slow", queued.version.key)
    assert cancelled.status is Status.FAILED and "shut down" in cancelled.error


def test_models_describes_each_wrapper(service):
    """models() lists every wrapper with its serializer and operations."""
    described = {m["model"]: m for m in service.models()}
    assert described["sgd"]["operations"] == ["status", "fit", "predict", "update", "delete"]
    assert described["linreg"]["serializer"] == "joblib"
    assert described["slow"]["description"].startswith("A linear regression")


def test_cache_is_bounded_by_bytes_too():
    """The model cache evicts least-recently-used entries above max_bytes, keeping the newest."""
    from mlserver.cache import ModelCache

    cache = ModelCache(capacity=10, max_bytes=100)
    for key in ("a", "b", "c"):
        assert cache.get(key, lambda k=key: k.upper(), size=40) == key.upper()
    assert len(cache) == 2 and cache.bytes == 80
    assert cache.get("a", lambda: "reloaded", size=40) == "reloaded"  # "a" was evicted
    cache.get("huge", lambda: "H", size=500)
    assert len(cache) == 1 and cache.bytes == 500  # the newest stays even above the bound
