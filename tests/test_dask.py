"""Training on a Dask `distributed` cluster: real worker processes, a SQLite store, HTTP.

The module starts one `LocalCluster` of two single-threaded worker processes. Wrappers travel
to the workers by reference, so the workers import them: this directory is on their
PYTHONPATH (as a deployment puts the user's wrapper modules on its workers' path). The last
section runs the deployed shape: `dask scheduler` and `dask worker` started by their CLIs,
the scheduler without mlserver or the wrapper modules, and `ml-server serve FILE.py:registry`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import numpy as np
import psutil
import pytest
from distributed import Client, LocalCluster
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor

from mlserver import Registry, create_app
from mlserver.cli import main
from mlserver.config import Settings
from mlserver.store import SQLStore
from mlserver.training import describe
from support import (
    ML_SERVER,
    ServerProcess,
    Where,
    answer,
    assert_startup_error,
    classification,
    fit_body,
    in_process,
    predict,
    predictions,
    put,
    registry,
    regression,
    request,
    settled,
    train,
    wait_until,
    where_source,
)

# Nearly every test here starts a Dask cluster or `ml-server` processes.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DASK = [str(Path(sys.executable).with_name("dask"))]


def environment() -> dict[str, str]:
    """This process's environment without MLSERVER_ variables, this directory importable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**clean, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    """A client of a LocalCluster with two worker processes that can import tests/support;
    every worker process is gone after it."""
    with pytest.MonkeyPatch.context() as patch:
        # Set for the module: the nanny also starts a replacement worker when one is killed.
        patch.setenv("PYTHONPATH", environment()["PYTHONPATH"])
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # NOTE: without a dashboard the scheduler still serves /metrics, by default on
            # port 8787; another cluster on this host would make that a warning (an error here).
            scheduler_kwargs={"dashboard_address": ":0"},
        )
        client = Client(cluster)
        try:
            yield client
        finally:
            pids = list(client.run(os.getpid).values())
            client.close()
            cluster.close()
            wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=10)


def worker_pids(client: Client) -> dict[str, int]:
    """The pid of each worker process, by worker address."""
    return client.run(os.getpid)


@pytest.fixture
def http(dask_client, sqlite_url) -> Iterator[falcon.testing.TestClient]:
    """An app on a SQLite file whose jobs run on the cluster, exactly as documented."""
    models = Registry([*registry(), Where])
    with in_process(models, sqlite_url, executor=dask_client.get_executor()) as client:
        yield client


def started(http, model: str, x, y=None, **params) -> str:
    """PUT a new job: its key, once the answer is a 202 saying RUNNING. Not support's `put`,
    which keeps only the key of the answer, not its status."""
    response = request(http, "PUT", model, json=fit_body(x, y, **params))
    assert response.status_code == 202, response.json
    assert answer(response)["status"] == "RUNNING"
    return answer(response)["model-key"]


def test_trains_several_models_at_once_on_the_cluster(http):
    """Concurrent jobs on the cluster predict as scikit-learn does; the failing one is FAILED."""
    xc, yc = classification()
    xr, yr = regression()
    kmeans = {"n_clusters": 3, "n_init": 2, "random_state": 0}
    keys = {
        "logreg": started(http, "logreg", xc, yc),
        "linreg": started(http, "linreg", xr, yr),
        "sgd": started(http, "sgd", xr, yr, modkwargs={"random_state": 0}),
        "kmeans": started(http, "kmeans", xc, modkwargs=kmeans),
        "failing": started(http, "failing", xr, yr),
    }
    states = {model: settled(http, model, key, timeout=60) for model, key in keys.items()}
    failed = states.pop("failing")
    assert failed["status"] == "FAILED"
    assert failed["error"] == "RuntimeError: boom: the data cannot be fitted"
    assert {model: s["status"] for model, s in states.items()} == dict.fromkeys(states, "FINISHED")
    np.testing.assert_array_equal(
        predictions(predict(http, "logreg", keys["logreg"], xc)),
        LogisticRegression().fit(xc, yc).predict(xc),
    )
    np.testing.assert_allclose(
        predictions(predict(http, "linreg", keys["linreg"], xr)),
        LinearRegression().fit(xr, yr).predict(xr),
    )
    np.testing.assert_allclose(
        predictions(predict(http, "sgd", keys["sgd"], xr)),
        SGDRegressor(random_state=0).fit(xr, yr).predict(xr),
    )
    np.testing.assert_array_equal(
        predictions(predict(http, "kmeans", keys["kmeans"], xc)),
        KMeans(**kmeans).fit(xc).predict(xc),
    )


def test_training_runs_in_a_worker_process(http, dask_client):
    """The fit runs in one of the cluster's worker processes, not in the server's."""
    workers = set(worker_pids(dask_client).values())
    keys = [started(http, "where", *regression(seed=seed)) for seed in range(4)]
    pids = {settled(http, "where", key, timeout=60)["metadata"]["user"]["pid"] for key in keys}
    assert pids <= workers
    assert os.getpid() not in pids


def test_a_worker_killed_mid_fit_never_leaves_the_version_running(http, dask_client):
    """SIGKILL of the worker fitting a job: Dask reschedules it and the version ends FINISHED
    (FAILED with a KilledWorker error is also recorded), never staying RUNNING."""
    x, y = regression()
    seconds = 3.0
    key = started(http, "slow", x, y, algkwargs={"seconds": seconds})
    processing = wait_until(lambda: {w: t for w, t in dask_client.processing().items() if t})
    [(holder, tasks)] = processing.items()
    assert [str(task).startswith("train-") for task in tasks] == [True]
    pid = worker_pids(dask_client)[holder]
    time.sleep(0.5)  # well inside the fit's sleep
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    state = settled(http, "slow", key, timeout=30)
    if state["status"] == "FAILED":
        assert "KilledWorker" in state["error"], state["error"]
    else:
        assert state["status"] == "FINISHED", state
        # A whole fit ran again after the kill, on a worker that is still alive.
        assert time.monotonic() - killed_at >= seconds
        assert state["metadata"]["training_seconds"] >= seconds
        np.testing.assert_allclose(
            predictions(predict(http, "slow", key, x)), LinearRegression().fit(x, y).predict(x)
        )
    # The nanny replaces the killed worker: the cluster is whole again for the next test.
    wait_until(
        lambda: len(pids := worker_pids(dask_client)) == 2 and pid not in pids.values(),
        timeout=20,
    )


def test_a_lost_scheduler_fails_the_running_job(tmp_path):
    """When the scheduler dies mid-fit the job is recorded FAILED, saying the executor dropped
    it (not that the server shut down), instead of staying RUNNING."""
    env = environment()
    scheduler_file = tmp_path / "scheduler.json"
    where = ("--scheduler-file", str(scheduler_file))
    scheduler = subprocess.Popen(
        [*DASK, "scheduler", *where, "--port", "0", "--dashboard-address", ":0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [*DASK, "worker", *where, "--no-nanny", "--nthreads", "1", "--no-dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with contextlib.ExitStack() as cleanup:
        for process in (scheduler, worker):
            cleanup.callback(process.wait, timeout=10)
            cleanup.callback(process.kill)
        wait_until(scheduler_file.exists, timeout=20)
        client = Client(scheduler_file=str(scheduler_file), timeout=10, set_as_default=False)
        cleanup.callback(client.close, timeout=5)
        client.wait_for_workers(1, timeout=20)
        store = SQLStore(f"sqlite:///{tmp_path / 'models.db'}")
        cleanup.callback(store.close)
        app = create_app(registry(), store, executor=client.get_executor())
        cleanup.callback(app.close)
        http = falcon.testing.TestClient(app)
        key = started(http, "slow", *regression(), algkwargs={"seconds": 5.0})
        wait_until(lambda: any(client.processing().values()))
        scheduler.kill()
        state = settled(http, "slow", key, timeout=20)
        assert state["status"] == "FAILED"
        assert "executor dropped it" in state["error"], state["error"]


def test_a_timed_out_job_is_cancelled_on_the_cluster(dask_client, sqlite_url):
    """A job past training_timeout_seconds on Dask is FAILED "timed out" and its task
    cancelled: the scheduler no longer runs it, and the worker's late result changes nothing
    (Dask cannot interrupt the worker's thread, which runs on until the fit returns)."""
    store = SQLStore(sqlite_url)
    settings = Settings(training_timeout_seconds=0.5)
    executor = dask_client.get_executor(pure=False)
    app = create_app(registry(), store, settings=settings, executor=executor)
    try:
        http = falcon.testing.TestClient(app)
        key = started(http, "slow", *regression(), algkwargs={"seconds": 2.0})
        sent = time.monotonic()
        state = settled(http, "slow", key, timeout=20)
        assert state["status"] == "FAILED", state
        assert state["error"] == "timed out after 0.5 s (training_timeout_seconds=0.5)"
        wait_until(lambda: not any(dask_client.processing().values()), timeout=10)
        time.sleep(max(0.0, sent + 3.0 - time.monotonic()))  # the worker's fit has returned
        assert settled(http, "slow", key, timeout=60) == state
        assert app.service.jobs.busy == 0
    finally:
        app.close()
        store.close()


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_trains_through_http_on_the_cluster(dask_client, tmp_path):
    """`serve --executor dask --scheduler ADDRESS` trains on the cluster as scikit-learn does;
    SIGTERM waits for the job still on the cluster, records it, then exits 0."""
    url = f"sqlite:///{tmp_path / 'models.db'}"
    address = dask_client.scheduler_info()["address"]
    dask = ("--executor", "dask", "--scheduler", address)
    server = ServerProcess(url, *dask, target="support:registry", env=environment(), stderr=True)
    try:
        x, y = classification()
        key = put(server, "logreg", x, y, expect=(202,))
        assert settled(server, "logreg", key, timeout=30)["status"] == "FINISHED"
        predicted = predictions(predict(server, "logreg", key, x))
        np.testing.assert_array_equal(predicted, LogisticRegression().fit(x, y).predict(x))

        xr, yr = regression()
        slow = put(server, "slow", xr, yr, expect=(202,), algkwargs={"seconds": 1.5})
        wait_until(lambda: any(dask_client.processing().values()))
        assert server.terminate().endswith(" and 1 training job(s)\n")
        assert server.communicate(timeout=30) == (0, "mlserver: stopped\n", "")
    finally:
        server.kill()
    store = SQLStore(url)
    try:
        assert store.newest("slow", slow).status.value == "FINISHED"
    finally:
        store.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# case: (command after the interpreter or script, extra environment, what stderr says)
STARTUP_ERRORS = {
    "no scheduler": (["--executor", "dask"], {}, "--executor dask needs --scheduler ADDRESS"),
    "bad address": (
        ["--executor", "dask", "--scheduler", "foo://host:8786"],
        {},
        "bad Dask scheduler address 'foo://host:8786': unknown address scheme 'foo'",
    ),
    "unreachable": (
        ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:{port}"],
        {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
        "Dask scheduler tcp://127.0.0.1:{port} is not reachable: Timed out",
    ),
    # Run with `import distributed` failing (see _WITHOUT_DISTRIBUTED).
    "not installed": (
        ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:{port}"],
        {},
        "--executor dask needs the distributed package",
    ),
}

# Runs the console script with `import distributed` failing, as when the extra is missing.
_WITHOUT_DISTRIBUTED = (
    "import sys; sys.modules['distributed'] = None; from mlserver.cli import main; sys.exit(main())"
)


@pytest.fixture(scope="module")
def startup_failures(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, str]]:
    """Every STARTUP_ERRORS case, run at once: its outcome and the message it should give."""
    store = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'models.db'}"
    port = _closed_port()
    running = {}
    for case, (args, extra, says) in STARTUP_ERRORS.items():
        args = [arg.format(port=port) for arg in args]
        serve = ["serve", *args, "--port", "0", "--store", store]
        blocked = case == "not installed"
        command = [sys.executable, "-c", _WITHOUT_DISTRIBUTED] if blocked else ML_SERVER
        process = subprocess.Popen(
            [*command, *serve],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**environment(), **extra},
        )
        running[case] = (process, says.format(port=port))
    outcomes = {}
    for case, (process, says) in running.items():
        out, err = process.communicate(timeout=60)
        outcomes[case] = (
            subprocess.CompletedProcess(process.args, process.returncode, out, err),
            says,
        )
    return outcomes


@pytest.mark.parametrize("case", STARTUP_ERRORS)
def test_dask_startup_errors_are_one_line(case, startup_failures):
    """A missing, bad or unreachable scheduler, or no `distributed`, exits 2 with one line."""
    assert_startup_error(*startup_failures[case])


def test_scheduler_without_dask_executor_is_refused(monkeypatch, capsys):
    """MLSERVER_SCHEDULER with the thread executor is an error, not a silent local training."""
    monkeypatch.setenv("MLSERVER_SCHEDULER", "tcp://scheduler:8786")
    assert main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        "mlserver: error: --scheduler is only used with --executor dask, not thread\n"
    )


# -- the deployed shape: `dask scheduler` and `dask worker` as their own processes ------------

# A wrapper module as users write one; the workers have it installed, the scheduler does not.
_SHIPPED = f"""
import os

from sklearn.linear_model import LinearRegression

from mlserver import ModelWrapper


{where_source("Shipped", "shipped")}"""

# The registry file the server is started with: one wrapper from the installed module, one
# defined here, in a file that exists only beside the server.
_REGISTRY_FILE = """
from sklearn.linear_model import LinearRegression

from mlserver import ModelWrapper, Registry
from shipped_models import Shipped


class Unshipped(ModelWrapper):
    name = "unshipped"

    def make_model(self, **modkwargs):
        return LinearRegression(**modkwargs)


registry = Registry([Shipped, Unshipped])
"""

# Shadows mlserver on the scheduler's path: the scheduler has Dask and nothing of ours.
_NO_MLSERVER = "raise ModuleNotFoundError(\"No module named 'mlserver'\", name='mlserver')\n"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[dict]:
    """A scheduler and a worker started by Dask's CLIs in empty directories, and
    `ml-server serve FILE.py:registry --executor dask --scheduler ADDRESS` on a SQLite file.
    Only the worker can import `shipped_models` (and mlserver); the scheduler neither."""
    root = tmp_path_factory.mktemp("deployed")
    for name in ("shipped", "blocked/mlserver", "server", "scheduler-cwd", "worker-cwd"):
        (root / name).mkdir(parents=True)
    (root / "shipped" / "shipped_models.py").write_text(_SHIPPED)
    (root / "blocked" / "mlserver" / "__init__.py").write_text(_NO_MLSERVER)
    target = root / "server" / "models.py"
    target.write_text(_REGISTRY_FILE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    ours = os.environ.get("PYTHONPATH", "")  # where mlserver comes from in this run
    on_scheduler = {**clean, "PYTHONPATH": str(root / "blocked")}
    on_worker = {
        **clean,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "shipped"), ours])),
    }
    scheduler_file = root / "scheduler.json"
    where = ("--scheduler-file", str(scheduler_file))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with contextlib.ExitStack() as cleanup:
        processes = []

        def start(command: list[str], env: dict, cwd: Path) -> subprocess.Popen:
            process = subprocess.Popen(command, env=env, cwd=cwd, **quiet)
            processes.append(process)
            return process

        @cleanup.callback
        def stop() -> None:
            for process in processes:
                process.kill()
            for process in processes:
                process.wait(timeout=10)

        scheduler = start(
            [*DASK, "scheduler", *where, "--port", "0", "--dashboard-address", ":0"],
            on_scheduler,
            root / "scheduler-cwd",
        )
        worker = start(
            [*DASK, "worker", *where, "--no-nanny", "--nthreads", "1", "--no-dashboard"],
            on_worker,
            root / "worker-cwd",
        )
        address = wait_until(lambda: _address_in(scheduler_file), timeout=30)
        # The premise: what the scheduler's interpreter cannot import.
        probe = "import importlib, sys; importlib.import_module(sys.argv[1])"
        for module in ("mlserver", "shipped_models"):
            done = subprocess.run(
                [sys.executable, "-c", probe, module],
                env=on_scheduler,
                cwd=root / "scheduler-cwd",
                capture_output=True,
                text=True,
            )
            assert f"No module named '{module}'" in done.stderr, done.stderr
        server = ServerProcess(
            f"sqlite:///{root / 'models.db'}",
            "--executor",
            "dask",
            "--scheduler",
            address,
            target=f"{target}:registry",
            env={"PYTHONPATH": on_worker["PYTHONPATH"]},  # as `pip install` would
        )
        cleanup.callback(server.kill)
        yield {"url": server.url, "scheduler": scheduler, "worker": worker, "address": address}


def _address_in(scheduler_file: Path) -> str | None:
    """The scheduler's address once it has written the whole file, else None."""
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_deployed_cluster_trains_a_file_registry_without_the_module_on_the_scheduler(deployed):
    """With scheduler and worker started by their CLIs and the wrapper's module installed on
    the worker only, a fit FINISHES on the worker and predicts as scikit-learn does."""
    x, y = regression()
    key, state = train(deployed["url"], "shipped", x, y, timeout=60)
    assert state["status"] == "FINISHED", state
    assert state["metadata"]["user"]["pid"] == deployed["worker"].pid
    predicted = predictions(predict(deployed["url"], "shipped", key, x))
    np.testing.assert_array_equal(predicted, LinearRegression().fit(x, y).predict(x))


@pytest.mark.slow
def test_a_worker_without_the_wrappers_module_fails_the_job_naming_it(deployed):
    """A wrapper whose module the workers cannot import: the version is FAILED with an error
    naming the module and saying to install it on the Dask workers, not Dask's bare text."""
    _, state = train(deployed["url"], "unshipped", *regression(), timeout=60)
    assert state["status"] == "FAILED", state
    error = state["error"]
    assert error.startswith("ModuleNotFoundError: the Dask worker tcp://"), error
    assert "cannot import module 'models'" in error, error
    assert "install it on every Dask worker" in error, error
    assert "deserialization of the task graph" not in error, error


@pytest.mark.slow
def test_a_job_the_scheduler_cannot_unpickle_names_the_scheduler(deployed):
    """Dask's own "Error during deserialization of the task graph" (a job submitted straight to
    the scheduler, bypassing mlserver's executor) is described as the scheduler's problem."""
    client = Client(deployed["address"], timeout=10, set_as_default=False)
    try:
        future = client.submit(os.getpid, Where(), pure=False)  # Where: not on the scheduler
        with pytest.raises(RuntimeError) as raised:
            future.result(timeout=30)
    finally:
        client.close(timeout=10)
    error = describe(raised.value)
    assert error.startswith("the Dask scheduler could not unpickle the job"), error
    assert "install it on the scheduler" in error, error
