"""`ml-server`: the real console script in its own process, a SQLite file, plain HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlserver import Registry
from mlserver.catalog import ENTRIES
from mlserver.cli import load_target, main, public_url
from mlserver.config import Settings
from mlserver.errors import ConfigurationError
from mlserver.store import SQLStore
from support import (
    ML_SERVER,
    assert_startup_error,
    classification,
    fit_body,
    predict,
    predictions,
    put,
    regression,
    server_environment,
    settled,
    unsigned_quiet,
    wait_until,
    where_source,
)

# Most tests here run `ml-server` in its own process.
pytestmark = pytest.mark.slow

# A user's registry file: slow models that leave a mark (a file beside this one) when they start.
MODELS = (
    textwrap.dedent(
        '''
    """Models for the CLI tests."""

    import os
    import time
    from pathlib import Path

    from sklearn.linear_model import LinearRegression, LogisticRegression

    from mlserver import ModelWrapper, Registry, wrap_estimator

    HERE = Path(__file__).parent


    class SlowFit(ModelWrapper):
        """A linear regression whose fit marks its start, then takes `seconds`."""

        name = "slow-fit"

        def make_model(self, **modkwargs):
            return LinearRegression(**modkwargs)

        def fit(self, model, x, y=None, seconds=1.0):
            (HERE / "fitting").touch()
            time.sleep(seconds)
            return model.fit(x, y)


    class SlowPredict(ModelWrapper):
        """A linear regression whose predict marks its start, then takes `SECONDS`."""

        name = "slow-predict"
        SECONDS = 1.5

        def make_model(self, **modkwargs):
            return LinearRegression(**modkwargs)

        def predict(self, model, x):
            (HERE / "predicting").touch()
            time.sleep(self.SECONDS)
            return model.predict(x)


    '''
    )
    + where_source()
    + textwrap.dedent(
        """

    WRAPPERS = [SlowFit(), SlowPredict(), Where(), wrap_estimator(LogisticRegression, "logistic")]
    TUPLE = tuple(WRAPPERS)
    REGISTRY = Registry(WRAPPERS)
    NOT_A_REGISTRY = 42
    NOT_WRAPPERS = [LinearRegression()]


    def registry():
        return Registry(WRAPPERS)


    def wrappers():
        return WRAPPERS


    def broken():
        raise RuntimeError("no registry today")
    """
    )
)
MODEL_NAMES = ["slow-fit", "slow-predict", "where", "logistic"]


class Server:
    """`ml-server serve ARGS` in its own process; `ready()` reads its first line.

    Not support's ServerProcess: these tests start servers without a TARGET, --port or
    --store (the catalog, MLSERVER_ variables), in another working directory, several before
    reading any start-up line, and check the store and models that line names."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [*ML_SERVER, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env if env is not None else server_environment(),
        )
        self.signalled = False

    def ready(self) -> Server:
        """Wait for the start-up line; take the URL, the store and the models from it."""
        line = self.process.stdout.readline()
        found = re.fullmatch(
            r"mlserver: serving (\d+) models on (http://\S+) \(store (\S+)\): (.*)\n", line
        )
        if found is None:
            self.process.kill()
            _, errors = self.process.communicate()
            raise AssertionError(f"server did not start: {line!r} {errors!r}")
        self.url, self.store = found[2], found[3]
        self.models = found[4].split(", ")
        assert int(found[1]) == len(self.models)
        return self

    def terminate(self) -> str:
        """Send SIGTERM; returns the line the server answers it with."""
        self.signalled = True
        self.process.send_signal(signal.SIGTERM)
        return self.process.stdout.readline()

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        """SIGTERM (unless sent already), then the exit code and the rest of stdout and stderr."""
        if not self.signalled and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        # Servers without signing keys warn "signing off" at start (test_signing checks it).
        err = unsigned_quiet(err)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def models_file(tmp_path) -> Path:
    """The user's registry file, in a directory of its own."""
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
def serve():
    """Start servers; each is stopped (killed if still running) at the end of the test."""
    servers: list[Server] = []

    def start(*args: str, ready: bool = True, **kwargs) -> Server:
        server = Server(*args, **kwargs)
        servers.append(server)
        return server.ready() if ready else server

    yield start
    for server in servers:
        server.kill()


def predicted(server: Server, model: str, key: str, x) -> np.ndarray:
    """What `key` predicts for `x`, once the answer is asserted a 200."""
    return predictions(predict(server, model, key, x))


def served_names(server: Server) -> list[str]:
    models = requests.get(f"{server.url}/models", timeout=10).json()["models"]
    return [model["model"] for model in models]


def test_serves_the_catalog_by_default(serve, sqlite_url):
    """Without TARGET, the catalog is served: a PUT, GET, POST round trip matches sklearn."""
    server = serve("--port", "0", "--store", sqlite_url)
    assert server.models == [*(entry.name for entry in ENTRIES), "imported"]
    assert server.store == sqlite_url
    x, y = classification()
    key = put(server, "logistic-regression", x, y, expect=(202,))
    assert settled(server, "logistic-regression", key)["status"] == "FINISHED"
    expected = LogisticRegression().fit(x, y).predict(x)
    np.testing.assert_array_equal(predicted(server, "logistic-regression", key, x), expected)
    dashboard = requests.get(f"{server.url}/ui/models/logistic-regression", timeout=10)
    assert dashboard.status_code == 200 and key in dashboard.text  # the dashboard is on
    code, out, err = server.stop()
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "mlserver: stopped"


def test_serves_a_target_file_or_module(serve, models_file, tmp_path, sqlite_url):
    """A TARGET file.py:function or module:list (from the working directory) is what is served."""
    by_path = serve(f"{models_file}:registry", "--port", "0", "--store", sqlite_url, ready=False)
    by_module = serve(
        "models:WRAPPERS", "--port", "0", "--store", "sqlite:///here.db", cwd=tmp_path, ready=False
    )
    for server in (by_path.ready(), by_module.ready()):
        assert server.models == served_names(server) == MODEL_NAMES
    assert (tmp_path / "here.db").exists()  # relative SQLite URLs live in the working directory


def test_environment_configures_serve(serve, models_file, tmp_path):
    """MLSERVER_ variables set TARGET, the store, the port and settings like the body limit."""
    env = server_environment(
        {
            "MLSERVER_TARGET": f"{models_file}:registry",
            "MLSERVER_STORE": f"sqlite:///{tmp_path / 'env.db'}",
            "MLSERVER_PORT": "0",
            "MLSERVER_MAX_BODY_BYTES": "1000",
        }
    )
    server = serve(env=env)
    assert server.store == env["MLSERVER_STORE"]
    assert server.models == MODEL_NAMES
    x, y = regression()
    body = fit_body(x, y)
    assert len(json.dumps(body)) > 1000
    assert requests.put(f"{server.url}/slow-fit", json=body, timeout=10).status_code == 413


def test_flags_win_over_the_environment(serve, models_file, tmp_path, busy_port):
    """Flags override MLSERVER_ variables: another TARGET, store, body limit and --no-ui."""
    env = server_environment(
        {
            "MLSERVER_TARGET": f"{models_file}:registry",
            "MLSERVER_STORE": f"sqlite:///{tmp_path / 'env.db'}",
            "MLSERVER_PORT": str(busy_port),
            "MLSERVER_MAX_BODY_BYTES": "1000",
            "MLSERVER_UI": "true",
        }
    )
    store = f"sqlite:///{tmp_path / 'flag.db'}"
    server = serve(
        "mlserver.catalog:catalog",
        *("--store", store, "--port", "0", "--max-body-bytes", "100000", "--no-ui"),
        env=env,
    )
    assert requests.get(f"{server.url}/ui", timeout=10).status_code == 404  # --no-ui
    assert server.store == store
    assert server.models == [*(entry.name for entry in ENTRIES), "imported"]
    x, y = regression()
    key = put(server, "linear-regression", x, y, expect=(202,))
    assert settled(server, "linear-regression", key)["status"] == "FINISHED"


# case: (arguments, what stderr says); {models} and {busy} are filled in. Each start pays the
# imports (~1.5 s); the rest of the messages are tested in-process below.
ERRORS = {
    "bad TARGET": (["{models}:nothing"], "has no attribute 'nothing'"),
    "bad store URL": (["--store", "mongodb://db/models"], "unsupported store URL scheme"),
    "unusable store": (["--store", "sqlite:///{models}/no/x.db"], "is not usable"),
    "port in use": (["--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}"),
}


@pytest.fixture(scope="module")
def failures(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, str]]:
    """Every ERRORS case, run at once: its outcome and the message it should give."""
    tmp = tmp_path_factory.mktemp("errors")
    models = tmp / "models.py"
    models.write_text(MODELS)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        fill = {"models": models, "busy": other.getsockname()[1]}
        running = {}
        for case, (args, says) in ERRORS.items():
            args = [arg.format(**fill) for arg in args]
            if "--store" not in args:
                args += ["--store", f"sqlite:///{tmp / 'models.db'}"]
            command = [*ML_SERVER, "serve", *args]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=server_environment(),
            )
            running[case] = (command, process, says.format(**fill))
        outcomes = {}
        for case, (command, process, says) in running.items():
            out, err = process.communicate(timeout=60)
            done = subprocess.CompletedProcess(command, process.returncode, out, err)
            outcomes[case] = (done, says)
    return outcomes


@pytest.mark.parametrize("case", ERRORS)
def test_startup_errors_are_one_line(case, failures):
    """A start-up problem the user can fix exits 2 with one line on stderr and no traceback."""
    assert_startup_error(*failures[case])


def test_sigterm_lets_an_in_flight_request_finish(serve, models_file, sqlite_url):
    """On SIGTERM new connections are refused, the request in flight is answered, exit code 0."""
    server = serve(f"{models_file}:registry", "--port", "0", "--store", sqlite_url)
    x, y = regression()
    key = put(server, "slow-predict", x, y, expect=(202,))
    settled(server, "slow-predict", key)
    answers: list[np.ndarray] = []
    request = threading.Thread(
        target=lambda: answers.append(predicted(server, "slow-predict", key, x))
    )
    request.start()
    wait_until(lambda: (models_file.parent / "predicting").exists())
    assert server.terminate().startswith("mlserver: stopping")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=5)
    request.join(timeout=30)
    np.testing.assert_allclose(answers[0], LinearRegression().fit(x, y).predict(x))
    code, out, err = server.stop()
    assert (code, out.strip(), err) == (0, "mlserver: stopped", "")


def test_a_closed_stdout_does_not_break_serving_or_stopping(serve, models_file, sqlite_url):
    """Whoever read the start-up line went away (`ml-server serve | head -1`): the server
    still answers, and SIGTERM still ends it cleanly, without a traceback."""
    server = serve(f"{models_file}:registry", "--port", "0", "--store", sqlite_url)
    server.process.stdout.close()
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    code, _, err = server.stop()
    assert (code, err) == (0, "")


def test_sigterm_waits_for_a_running_job(serve, models_file, sqlite_url):
    """SIGTERM while a job trains: the job finishes and is recorded, then exit code 0."""
    server = serve(f"{models_file}:registry", "--port", "0", "--store", sqlite_url)
    x, y = regression()
    key = put(server, "slow-fit", x, y, expect=(202,), algkwargs={"seconds": 1.0})
    wait_until(lambda: (models_file.parent / "fitting").exists())
    assert server.terminate().endswith(" and 1 training job(s)\n")
    assert server.stop()[::2] == (0, "")
    assert newest(sqlite_url, "slow-fit", key) == "FINISHED"


def test_process_executor_trains_in_worker_processes(serve, models_file, sqlite_url):
    """With --executor process, jobs fit as sklearn does in other processes; SIGTERM waits."""
    server = serve(
        f"{models_file}:registry",
        *("--port", "0", "--store", sqlite_url, "--executor", "process", "--training-threads", "1"),
    )
    x, y = classification()
    logistic = put(server, "logistic", x, y, expect=(202,))
    where = put(server, "where", *regression(), expect=(202,))
    state = settled(server, "logistic", logistic, timeout=60)
    assert state["status"] == "FINISHED", state["error"]
    expected = LogisticRegression().fit(x, y).predict(x)
    np.testing.assert_array_equal(predicted(server, "logistic", logistic, x), expected)
    state = settled(server, "where", where, timeout=60)
    assert state["metadata"]["user"]["pid"] not in (server.process.pid, os.getpid())
    slow = put(server, "slow-fit", *regression(), expect=(202,), algkwargs={"seconds": 1.0})
    wait_until(lambda: (models_file.parent / "fitting").exists())
    assert server.terminate().endswith(" and 1 training job(s)\n")
    assert server.stop()[::2] == (0, "")
    assert newest(sqlite_url, "slow-fit", slow) == "FINISHED"


def newest(url: str, model: str, key: str) -> str:
    """The status of the key's newest version, read from the store itself."""
    store = SQLStore(url)
    try:
        return store.newest(model, key).status.value
    finally:
        store.close()


# -- in-process: TARGET loading, messages, help -----------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> Iterator[tuple[Path, str]]:
    """MODELS as a uniquely named module in the working directory; sys.path and sys.modules
    are restored afterwards."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield path, name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("how", ["path", "module"])
@pytest.mark.parametrize("attribute", ["REGISTRY", "WRAPPERS", "TUPLE", "registry", "wrappers"])
def test_load_target_takes_every_form(user_module, attribute, how):
    """A Registry, a list or tuple of wrappers, or a function returning either all load."""
    path, name = user_module
    loaded = load_target(f"{path if how == 'path' else name}:{attribute}")
    assert isinstance(loaded, Registry)
    assert [wrapper.name for wrapper in loaded] == MODEL_NAMES


def test_a_file_target_is_importable_by_name(user_module):
    """A file TARGET is registered under its own name, so its classes pickle by reference."""
    path, name = user_module
    wrapper = load_target(f"{path}:registry").get("slow-fit")
    assert type(wrapper).__module__ == name and sys.modules[name].__file__ == str(path)
    assert type(pickle.loads(pickle.dumps(wrapper))) is type(wrapper)


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("{name}", "TARGET must be package.module:attr or path/to/file.py:attr"),
        ("{name}:", "TARGET must be package.module:attr"),
        ("no_such_module_xyz:registry", "no module named 'no_such_module_xyz'"),
        ("{name}_dependent:registry", "failed: ModuleNotFoundError: No module named 'no_such_dep"),
        ("{dir}/nowhere.py:registry", "no such file"),
        ("{name}:nothing", "has no attribute 'nothing'"),
        ("{path}:NOT_A_REGISTRY", "is a int; expected a Registry"),
        ("{path}:NOT_WRAPPERS", "is not a ModelWrapper"),
        ("{path}:broken", "calling {path}:broken failed: RuntimeError: no registry today"),
    ],
)
def test_load_target_explains_what_is_wrong(user_module, target, says):
    """Each way a TARGET can be wrong is a ConfigurationError saying which, on one line."""
    path, name = user_module
    # A module whose own import fails: not the same as a TARGET module that does not exist.
    (path.parent / f"{name}_dependent.py").write_text("import no_such_dependency_xyz\n")
    fill = {"name": name, "path": path, "dir": path.parent}
    with pytest.raises(ConfigurationError) as raised:
        load_target(target.format(**fill))
    assert says.format(**fill) in str(raised.value)
    assert "\n" not in str(raised.value)
    sys.modules.pop(f"{name}_dependent", None)


def test_bad_values_are_one_line_naming_their_source(monkeypatch, capsys):
    """A bad MLSERVER_ variable or setting flag exits 2 with one line on stderr naming it."""
    monkeypatch.setenv("MLSERVER_PORT", "eighty")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == "mlserver: error: MLSERVER_PORT: not a number: 'eighty'\n"
    monkeypatch.delenv("MLSERVER_PORT")
    monkeypatch.setenv("MLSERVER_EXECUTOR", "cluster")
    assert main(["serve"]) == 2
    assert "MLSERVER_EXECUTOR must be one of thread, process" in capsys.readouterr().err
    monkeypatch.delenv("MLSERVER_EXECUTOR")
    assert main(["serve", "--heartbeat-seconds", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlserver: error: heartbeat_seconds") and err.count("\n") == 1


def test_help_documents_every_option_and_variable(capsys):
    """`serve --help` names every flag with its MLSERVER_ variable, Settings fields included."""
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    names = ["store", "host", "port", "threads", "executor", "graceful_timeout", "log_level"]
    names += [field.name for field in dataclasses.fields(Settings)]
    for name in names:
        assert "--" + name.replace("_", "-") in text
        assert "MLSERVER_" + name.upper() in text
    assert "MLSERVER_TARGET" in text


def test_catalog_command_lists_every_entry(capsys):
    """`ml-server catalog` prints one row per entry: name, estimator, kind and PATCH method."""
    assert main(["catalog"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "ESTIMATOR", "KIND", "PATCH"]
    assert [row.split() for row in rows] == [
        *([e.name, e.import_path, e.kind, e.update or "-"] for e in ENTRIES),
        ["imported", "(imported)", "any", "-"],
    ]


def test_catalog_into_a_pipe_nobody_reads_ends_quietly():
    """`ml-server catalog | head -1`: a reader that is gone is not a traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*ML_SERVER, "catalog"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///mlserver.db", "sqlite:///mlserver.db"),
        ("sqlite:////var/lib/models.db", "sqlite:////var/lib/models.db"),
        (
            "postgresql://app:s3cr/t@db:5432/models?sslmode=require",
            "postgresql://***@db:5432/models",
        ),
        ("postgres://db/models?password=x", "postgres://db/models"),
    ],
)
def test_public_url_hides_credentials(url, shown):
    """The store URL the CLI prints keeps where the data is and drops who logs in, and how."""
    assert public_url(url) == shown
