"""GET /metrics (Prometheus, one registry per app), request ids and the access log."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlserver import create_app
from mlserver.cli import KeyValueFormatter
from mlserver.store import SQLStore
from support import (
    classification,
    fit_body,
    in_process,
    predict_body,
    put,
    registry,
    regression,
    server_environment,
    wait_until,
)


def scrape(client) -> list:
    """Every sample of the app's /metrics, parsed as Prometheus would."""
    response = client.simulate_get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


@pytest.fixture
def client(sqlite_url):
    """A test client on an app with the test registry and a real SQLite store."""
    with in_process(registry(), sqlite_url) as client:
        yield client


def test_requests_are_counted_by_route_model_method_and_status(client):
    """Each answer counts once under its route template, registered model, method and status,
    and is timed in the latency histogram."""
    for _ in range(3):
        client.simulate_get("/health")
    client.simulate_put("/linreg", json={"x": "{bad"})
    client.simulate_put("/no-such-model", json={})
    client.simulate_get("/a/b/c")
    samples = scrape(client)
    requests = "mlserver_http_requests_total"
    assert value(samples, requests, route="/health", method="GET", status="200") == 3
    assert value(samples, requests, route="/{model}", model="linreg", status="400") == 1
    assert value(samples, requests, route="/{model}", model="", status="404") == 1
    assert value(samples, requests, route="unmatched", status="404") == 1
    latency = "mlserver_http_request_duration_seconds_count"
    assert value(samples, latency, route="/health") == 3
    assert value(samples, latency) == 6  # this scrape is counted once it is answered
    assert value(samples, "mlserver_http_request_duration_seconds_sum") > 0
    assert value(scrape(client), requests, route="/metrics", status="200") == 1


def counted(client, **labels: str) -> list:
    """The samples once a job matching `labels` has been counted."""

    def found():
        samples = scrape(client)
        return samples if value(samples, "mlserver_jobs_total", **labels) >= 1 else None

    return wait_until(found)


def test_jobs_training_seconds_and_the_model_cache_move(client):
    """Finished, failed and discarded jobs count by model and kind; training time is observed;
    the first prediction of a version misses the cache and the next ones hit it."""
    x, y = regression()
    key = put(client, "sgd", x, y)
    put(client, "failing", x, y)
    counted(client, model="sgd", kind="fit", outcome="finished")
    samples = counted(client, model="failing", kind="fit", outcome="failed")
    assert value(samples, "mlserver_jobs_total") == 2
    assert value(samples, "mlserver_training_seconds_count", model="sgd", kind="fit") == 1
    assert value(samples, "mlserver_training_seconds_count", model="failing") == 0
    assert value(samples, "mlserver_jobs_running") == 0

    predict = predict_body(key, x.head(2))
    for _ in range(3):
        assert client.simulate_post("/sgd", json=predict).status_code == 200
    samples = scrape(client)
    assert value(samples, "mlserver_model_cache_misses_total") == 1
    assert value(samples, "mlserver_model_cache_hits_total") == 2

    patched = client.simulate_patch("/sgd", json=fit_body(x, y, **{"model-key": key}))
    assert patched.status_code == 202
    counted(client, model="sgd", kind="update", outcome="finished")

    slow = client.simulate_put("/slow", json=fit_body(x, y, algkwargs={"seconds": 1.0}))
    assert value(scrape(client), "mlserver_jobs_running") == 1
    client.simulate_delete("/slow", params={"model-key": slow.json["model-key"]})
    samples = counted(client, model="slow", outcome="discarded")
    assert value(samples, "mlserver_jobs_running") == 0
    assert value(samples, "mlserver_training_seconds_count", model="slow") == 0


def test_store_errors_are_counted_by_operation(tmp_path):
    """Each failed store call counts under its operation (here /ready's ping)."""
    app = create_app(registry(), SQLStore(f"sqlite:///{tmp_path}/missing-dir/models.db"))
    client = falcon.testing.TestClient(app)
    try:
        assert value(scrape(client), "mlserver_store_errors_total") == 0
        for _ in range(2):
            assert client.simulate_get("/ready").status_code == 503
        samples = scrape(client)
        assert value(samples, "mlserver_store_errors_total", operation="ping") == 2
        assert value(samples, "mlserver_http_requests_total", route="/ready", status="503") == 2
    finally:
        app.close()


def test_each_app_has_its_own_registry(sqlite_url, tmp_path):
    """Two apps in one process count only their own requests, even on one store."""
    first = falcon.testing.TestClient(create_app(registry(), SQLStore(sqlite_url)))
    second = falcon.testing.TestClient(create_app(registry(), SQLStore(sqlite_url)))
    try:
        for _ in range(4):
            first.simulate_get("/health")
        second.simulate_get("/health")
        health = {"route": "/health", "status": "200"}
        assert value(scrape(first), "mlserver_http_requests_total", **health) == 4
        assert value(scrape(second), "mlserver_http_requests_total", **health) == 1
        assert first.app.metrics.registry is not second.app.metrics.registry
    finally:
        first.app.close()
        second.app.close()


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123.retry:2", True), (None, False), ("two words", False), ("x" * 200, False)],
)
def test_request_id_is_echoed_or_made(client, given, kept):
    """A tame X-Request-ID comes back as sent; a missing or unsafe one is replaced by a fresh
    id, on successes and errors alike."""
    headers = {"X-Request-ID": given} if given else {}
    for path in ("/health", "/no-such-model"):
        answered = client.simulate_get(path, headers=headers).headers["x-request-id"]
        if kept:
            assert answered == given
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", answered)


def test_one_access_log_line_per_request(client, caplog):
    """At INFO each request writes one key=value line with its id, status and time; at the
    default WARNING level nothing is written."""
    client.simulate_get("/health")
    assert not [r for r in caplog.records if r.name == "mlserver.access"]
    caplog.set_level(logging.INFO, logger="mlserver.access")
    client.simulate_get("/health", headers={"X-Request-ID": "req-1"})
    client.simulate_post("/linreg path", json={"x": {}})
    lines = [KeyValueFormatter().format(r) for r in caplog.records if r.name == "mlserver.access"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    first, second = lines
    assert re.search(
        r"event=request request_id=req-1 method=GET path=/health route=/health ", first
    )
    assert re.search(r" status=200 seconds=\d+\.\d{6}$", first)
    assert 'path="/linreg path"' in second and "status=404 " in second
    assert "error=ModelNotFound" in second


@pytest.mark.slow
def test_multiprocess_mode_sums_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR set, /metrics answers the requests of every process."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys

            import falcon.testing

            from mlserver import create_app
            from mlserver.store import SQLStore
            from support import registry

            app = create_app(registry(), SQLStore(sys.argv[1]))
            client = falcon.testing.TestClient(app)
            for _ in range(int(sys.argv[2])):
                client.simulate_get("/health")
            if len(sys.argv) > 3:
                print(client.simulate_get("/metrics").text)
            app.close()
            """
        )
    )
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = server_environment(
        {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(Path(__file__).parent)}
    )
    url = f"sqlite:///{tmp_path / 'models.db'}"

    def run(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(script), url, *args], stdout=subprocess.PIPE, text=True, env=env
        )

    workers = [run("3"), run("4")]
    for worker in workers:
        worker.communicate(timeout=60)
        assert worker.returncode == 0
    scraper = run("1", "scrape")
    out, _ = scraper.communicate(timeout=60)
    assert scraper.returncode == 0
    samples = [s for f in text_string_to_metric_families(out) for s in f.samples]
    assert value(samples, "mlserver_http_requests_total", route="/health", status="200") == 8


def test_every_family_is_exposed_after_a_session(client):
    """After one fit and one prediction, every metric family appears in the exposition."""
    x, y = classification()
    key = put(client, "logreg", x, y)
    counted(client, model="logreg", outcome="finished")
    assert client.simulate_post("/logreg", json=predict_body(key, x)).status_code == 200
    names = {s.name for s in scrape(client)}
    assert {
        "mlserver_http_requests_total",
        "mlserver_http_request_duration_seconds_bucket",
        "mlserver_jobs_total",
        "mlserver_training_seconds_bucket",
        "mlserver_jobs_running",
        "mlserver_model_cache_hits_total",
        "mlserver_model_cache_misses_total",
    } <= names
