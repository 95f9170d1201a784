"""Graceful shutdown of `ml-server serve` on SIGTERM, beyond what tests/test_cli.py proves.

test_cli.py already proves that one small in-flight request is answered, that new connections
are refused, and that a job running at SIGTERM finishes (thread and process pools) before exit
0. Here: answers larger than the socket buffers still in flight, jobs still queued, a job longer
than --graceful-timeout (left to its lease), and a second SIGTERM.
"""

from __future__ import annotations

import io
import signal
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LinearRegression

from mlserver.store import SQLStore
from support import ServerProcess, put, regression, wait_until

# Every test here starts and signals `ml-server serve` processes.
pytestmark = pytest.mark.slow

# Models that leave a file in MARKS (the directory of the registry file, plus "marks") each
# time a fit or a predict starts, so a test knows the work is in flight before it signals.
MODELS = textwrap.dedent(
    '''
    """Models for the shutdown tests."""

    import time
    import uuid
    from pathlib import Path

    from sklearn.linear_model import LinearRegression

    from mlserver import ModelWrapper, Registry

    MARKS = Path(__file__).parent / "marks"


    class SlowFit(ModelWrapper):
        """A linear regression whose fit marks its start, then takes `seconds`."""

        name = "slow-fit"

        def make_model(self, **modkwargs):
            return LinearRegression(**modkwargs)

        def fit(self, model, x, y=None, seconds=1.0):
            (MARKS / f"fit-{uuid.uuid4().hex}").touch()
            time.sleep(seconds)
            return model.fit(x, y)


    class SlowPredict(ModelWrapper):
        """A linear regression whose predict marks its start, then takes a second."""

        name = "slow-predict"

        def make_model(self, **modkwargs):
            return LinearRegression(**modkwargs)

        def predict(self, model, x):
            (MARKS / f"predict-{uuid.uuid4().hex}").touch()
            time.sleep(1.0)
            return model.predict(x)


    def registry():
        return Registry([SlowFit(), SlowPredict()])
    '''
)


@pytest.fixture
def models(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    (tmp_path / "marks").mkdir()
    return path


@pytest.fixture
def serve(models, sqlite_url):
    """Start servers on the test's store; each is killed at the end if it still runs."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        servers.append(ServerProcess(sqlite_url, *args, target=f"{models}:registry", stderr=True))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def marks(models: Path, kind: str) -> int:
    return len(list((models.parent / "marks").glob(f"{kind}-*")))


def versions(store_url: str) -> dict[str, tuple[str, str | None]]:
    """key -> (status, error) of the newest version of every key in the store."""
    store = SQLStore(store_url)
    try:
        newest = [v for model in ("slow-fit", "slow-predict") for v in store.keys(model).items]
        return {v.key: (v.status.value, v.error) for v in newest}
    finally:
        store.close()


def test_big_answers_in_flight_at_sigterm_arrive_whole(serve, models, sqlite_url):
    """Three predicts in flight at SIGTERM, each answering ~6 MB to a client that reads it only
    after the server's threads are done (more than the socket buffers hold), all get their
    complete 200 before the server exits 0."""
    server = serve()
    key = put(server, "slow-predict", *regression(), expect=(202,), name="big")
    wait_until(lambda: versions(sqlite_url)[key][0] == "FINISHED")
    x, y = regression()
    rows = pd.DataFrame(
        np.random.default_rng(0).normal(size=(300_000, 2)), columns=x.columns
    ).round(6)
    body = {"x": rows.to_json(orient="split"), "orient": "split", "model-key": key}
    answers: list[requests.Response] = []

    def send() -> None:
        # stream: only the head is read here; the body waits in the server's buffers.
        answers.append(
            requests.post(f"{server.url}/slow-predict", json=body, timeout=60, stream=True)
        )

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: marks(models, "predict") == 3, timeout=30)
    assert server.terminate().startswith("mlserver: stopping")
    for thread in threads:
        thread.join(timeout=60)
    time.sleep(1.0)  # a slow reader: by now the server's threads have written everything
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:200] for a in answers]
    expected = LinearRegression().fit(x, y).predict(rows)
    for answer in answers:
        assert len(answer.content) > 5_000_000
        got = pd.read_json(io.StringIO(answer.json()["y"]), orient="split").iloc[:, 0]
        np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-9)
    code, out, err = server.communicate()
    assert (code, out, err) == (0, "mlserver: stopped\n", "")


def test_sigterm_leaves_a_job_past_the_graceful_timeout_and_fails_the_queued_ones(
    serve, models, sqlite_url
):
    """SIGTERM with one job running past --graceful-timeout and two queued: the server exits 0
    within the grace (plus a margin), the queued ones are FAILED (cancelled) and never start,
    and the running one is left RUNNING for the next server to mark interrupted (its inputs
    are not stored, so it cannot run again)."""
    server = serve("--training-threads", "1", "--graceful-timeout", "1", "--no-store-training-data")
    x, y = regression()
    running = put(
        server, "slow-fit", x, y, expect=(202,), name="running", algkwargs={"seconds": 5.0}
    )
    queued = [
        put(server, "slow-fit", x, y, expect=(202,), name=f"queued-{i}", algkwargs={"seconds": 0})
        for i in range(2)
    ]
    wait_until(lambda: marks(models, "fit") == 1)
    signalled = time.monotonic()
    assert server.terminate().endswith(" and 3 training job(s)\n")
    code, out, err = server.communicate()
    assert time.monotonic() - signalled < 3.0  # not the 5 s the job would take
    assert code == 0 and err.count("event=job_abandoned") == 1, err
    assert out.endswith("mlserver: stopped\n") and "left 1 training job(s) RUNNING" in out
    assert marks(models, "fit") == 1  # the queued fits never started
    stored = versions(sqlite_url)
    assert stored[running] == ("RUNNING", None)
    for key in queued:
        status, error = stored[key]
        assert status == "FAILED" and error.startswith("cancelled"), stored[key]
    serve()  # a live server on this host sees the process is gone
    status, error = versions(sqlite_url)[running]
    assert status == "FAILED" and error.startswith("interrupted"), (status, error)


def test_sigterm_waits_for_a_job_that_ends_within_the_graceful_timeout(serve, models, sqlite_url):
    """A job that ends within --graceful-timeout is waited for and FINISHED before exit 0."""
    server = serve("--graceful-timeout", "10")
    key = put(
        server, "slow-fit", *regression(), expect=(202,), name="short", algkwargs={"seconds": 1.5}
    )
    wait_until(lambda: marks(models, "fit") == 1)
    assert server.terminate().endswith(" and 1 training job(s)\n")
    assert server.communicate() == (0, "mlserver: stopped\n", "")
    assert versions(sqlite_url)[key] == ("FINISHED", None)


def test_a_second_sigterm_exits_at_once_and_the_job_comes_back_interrupted(
    serve, models, sqlite_url
):
    """A second SIGTERM while a long job runs exits 1 at once; the next server marks that job
    FAILED (interrupted) at start-up, never leaving it RUNNING (without stored inputs, it
    cannot run again)."""
    server = serve("--no-store-training-data")
    key = put(
        server, "slow-fit", *regression(), expect=(202,), name="long", algkwargs={"seconds": 300}
    )
    wait_until(lambda: marks(models, "fit") == 1)
    assert server.terminate().startswith("mlserver: stopping")
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code, _, err = server.communicate(timeout=10)
    assert code == 1 and "SIGTERM again: exiting without waiting" in err
    assert time.monotonic() - signalled < 5
    assert versions(sqlite_url)[key][0] == "RUNNING"  # what the dead process left
    serve()
    status, error = versions(sqlite_url)[key]
    assert status == "FAILED" and error.startswith("interrupted"), (status, error)
