"""Training timeouts, the bound on queued jobs, and a stop within --graceful-timeout.

Real executors (thread pool, ProcessPool), real stores, real HTTP through `ml-server serve`
where the behaviour is an answer's; fits that sleep or never end stand for `max_iter=1e9`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from mlserver import Registry
from mlserver.config import Settings
from mlserver.errors import Overloaded
from mlserver.frames.keys import name_key
from mlserver.pool import ProcessPool
from mlserver.service import Service
from mlserver.store import SQLStore
from mlserver.store.base import Artifact, Status
from support import Endless, ServerProcess, Slow, regression, wait_until

SUPPORT = Path(__file__).with_name("support.py")


@pytest.fixture
def services(store_url) -> Iterator:
    """Build Services on the test's store; each is closed (not waiting for jobs) at the end."""
    built: list[Service] = []
    store = SQLStore(store_url)

    def build(executor=None, **settings) -> Service:
        service = Service(
            Registry([Slow, Endless]), store, settings=Settings(**settings), executor=executor
        )
        built.append(service)
        return service

    yield build
    for service in built:
        service.close(timeout=0)
    store.close()


def put(service: Service, model: str, name: str, **algkwargs):
    """A fit of the regression data under `name`, with these algkwargs."""
    x, y = regression()
    return service.fit(model, x=x.to_json(), y=y.to_json(), key_name=name, algkwargs=algkwargs)


def test_a_job_past_its_timeout_is_failed_and_the_key_trains_again(services):
    """A fit running past training_timeout_seconds is FAILED "timed out" (naming the seconds
    and the setting) while it still sleeps, and a later PUT of the key trains it again."""
    service = services(training_timeout_seconds=0.3)
    claim = put(service, "slow", "k", seconds=3)
    key = claim.version.key
    started = time.monotonic()
    failed = wait_until(
        lambda: (v := service.status("slow", key=key)).status is Status.FAILED and v
    )
    assert time.monotonic() - started < 2.0
    assert failed.error == "timed out after 0.3 s (training_timeout_seconds=0.3)"
    assert service.jobs.running == 0 and service.jobs.busy == 1  # the thread still sleeps
    again = put(service, "slow", "k", seconds=0)
    assert again.created and again.version.version == 2
    wait_until(lambda: service.status("slow", key=key).status is Status.FINISHED, timeout=10)


def test_a_late_result_on_a_thread_pool_is_discarded(services):
    """A thread cannot be stopped: its fit returns after the timeout, and its result is
    discarded (the version stays FAILED, no blob, its error unchanged), its slot freed then."""
    service = services(training_timeout_seconds=0.2, training_threads=1)
    claim = put(service, "slow", "late", seconds=1.0)
    key = claim.version.key
    wait_until(lambda: service.status("slow", key=key).status is Status.FAILED)
    before = service.status("slow", key=key)
    assert service.jobs.busy == 1  # the one training thread is still taken
    wait_until(lambda: service.jobs.busy == 0, timeout=10)  # the fit returned
    time.sleep(0.2)
    after = service.status("slow", key=key)
    assert after == before
    assert after.status is Status.FAILED and after.size is None
    assert service.store.newest("slow", key, finished=True) is None


def test_finish_after_fail_does_not_resurrect_the_version(store):
    """The store's finish writes only a RUNNING row: after a fail it returns False and the
    version stays FAILED with its error and no blob, on every backend."""
    claim = store.claim("m", "k", worker="w", lease_seconds=30, retrain=False)
    assert store.fail(claim.version.id, "timed out after 1 s (training_timeout_seconds=1)")
    assert not store.finish(claim.version.id, Artifact(b"late", "0" * 64, "joblib", {}))
    newest = store.newest("m", "k")
    assert newest.status is Status.FAILED and newest.error.startswith("timed out")
    assert newest.size is None and store.newest("m", "k", finished=True) is None


@pytest.mark.slow
def test_a_timed_out_job_on_the_process_pool_has_its_process_killed(services, tmp_path):
    """On a ProcessPool the timed-out job's process is killed (gone, not left fitting), the
    version is FAILED "timed out", and the pool runs the next job in a fresh process."""
    pool = ProcessPool(1)
    pool.submit(exec, "import support").result(timeout=60)  # the process starts, warm
    service = services(pool, training_timeout_seconds=1.5)
    mark = tmp_path / "pid"
    key = put(service, "endless", "stuck", mark=str(mark)).version.key
    pid = int(wait_until(lambda: mark.exists() and mark.read_text(), timeout=10))
    assert psutil.pid_exists(pid) and pid != os.getpid()
    wait_until(lambda: service.status("endless", key=key).status is Status.FAILED, timeout=10)
    assert service.status("endless", key=key).error.startswith("timed out after 1.5 s")
    wait_until(lambda: not psutil.pid_exists(pid), timeout=5)
    assert pool.submit(os.getpid).result(timeout=60) not in (pid, os.getpid())
    pool.shutdown()


def test_the_queue_bound_holds_under_concurrent_requests(services):
    """Eight concurrent PUTs on one training thread with max_queued_jobs=2: exactly three
    start (one running, two waiting), five are Overloaded, and only three versions exist."""
    service = services(training_threads=1, max_queued_jobs=2)
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def send(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(put(service, "slow", f"n{i}", seconds=1.5))
        except Overloaded as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(refused) == 5 and {o.retry_after for o in refused} == {5}
    assert "max_queued_jobs=2" in str(refused[0])
    assert sum(1 for o in outcomes if not isinstance(o, Overloaded) and o.created) == 3
    assert len(service.lifecycle.keys("slow").items) == 3
    assert service.jobs.queued == 2 and service.jobs.busy == 1


# -- through ml-server serve -------------------------------------------------------------------


@pytest.fixture
def serve(sqlite_url):
    """Start `ml-server serve` on the test's store; each is killed at the end if it runs."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        target = f"{SUPPORT}:endless_registry"
        servers.append(ServerProcess(sqlite_url, *args, target=target, stderr=True))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def http_put(server: ServerProcess, model: str, name: str, **algkwargs) -> requests.Response:
    x, y = regression()
    body = {"x": x.to_json(), "y": y.to_json(), "name": name, "algkwargs": algkwargs}
    return requests.put(f"{server.url}/{model}", json=body, timeout=30)


def http_status(server: ServerProcess, model: str, name: str) -> requests.Response:
    params = {"model-key": name_key(name)}
    return requests.get(f"{server.url}/{model}", params=params, timeout=30)


@pytest.mark.slow
def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(serve):
    """With one training thread busy and max_queued_jobs=1 taken, a PUT that would start a job
    is a 503 with Retry-After and no version; a PUT of the running key still gets its 200; once
    the queue drains the same PUT is a 202 and trains."""
    server = serve("--training-threads", "1", "--max-queued-jobs", "1")
    assert http_put(server, "slow", "running", seconds=1.5).status_code == 202
    assert http_put(server, "slow", "waiting", seconds=0).status_code == 202
    refused = http_put(server, "slow", "refused", seconds=0)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert refused.json()["title"] == "Server busy"
    assert "max_queued_jobs=1" in refused.json()["description"]
    assert http_status(server, "slow", "refused").status_code == 404  # nothing stored
    same = http_put(server, "slow", "running", seconds=1.5)  # starts nothing: not refused
    assert same.status_code == 200 and same.json()["status"] == "RUNNING"
    wait_until(lambda: http_status(server, "slow", "waiting").json()["status"] == "FINISHED")
    again = http_put(server, "slow", "refused", seconds=0)
    assert again.status_code == 202, again.text
    wait_until(lambda: http_status(server, "slow", "refused").json()["status"] == "FINISHED")


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_sigterm_with_two_endless_fits_ends_within_the_graceful_timeout(serve, tmp_path, executor):
    """SIGTERM while two fits never end: the server exits 0 within --graceful-timeout (plus a
    second), saying it left both RUNNING; the next server marks them interrupted (their inputs
    are not stored, so they cannot run again)."""
    server = serve(
        "--executor",
        executor,
        "--training-threads",
        "2",
        "--graceful-timeout",
        "1",
        "--no-store-training-data",
    )
    marks = [tmp_path / f"fit-{i}" for i in range(2)]
    for i, mark in enumerate(marks):
        assert http_put(server, "endless", f"e{i}", mark=str(mark)).status_code == 202
    wait_until(lambda: all(mark.exists() for mark in marks), timeout=30)
    signalled = time.monotonic()
    assert server.terminate().endswith(" and 2 training job(s)\n")
    code, out, err = server.communicate(timeout=30)
    assert time.monotonic() - signalled < 2.5
    assert code == 0, err
    assert out.startswith("mlserver: left 2 training job(s) RUNNING past --graceful-timeout")
    assert out.endswith("mlserver: stopped\n")
    if executor == "process":  # the pool's processes were killed, not left fitting
        for mark in marks:
            wait_until(lambda mark=mark: not psutil.pid_exists(int(mark.read_text())), timeout=5)
    after = serve()
    for i in range(2):
        state = http_status(after, "endless", f"e{i}").json()
        assert state["status"] == "FAILED" and state["error"].startswith("interrupted"), state
