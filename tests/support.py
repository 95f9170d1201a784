"""What the tests share: tiny real models and data, the round trips of the HTTP contract (in
process and over real HTTP alike), plain database access for tests that tamper with stored
rows, and the one way to start `ml-server serve` in its own process."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import numpy as np
import pandas as pd
import psycopg2
import requests
from playhouse import db_url
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor

from mlserver import ModelWrapper, Registry, create_app, wrap_estimator
from mlserver.serializers import Serializer
from mlserver.store import SQLStore
from mlserver.store._tables import (
    ALIAS_TABLE,
    DATASET_TABLE,
    LINK_TABLE,
    SCHEMA_TABLE,
    TABLE_NAME,
)


class Slow(ModelWrapper):
    """A linear regression whose fit sleeps `seconds` first: keeps a version RUNNING."""

    name = "slow"

    def make_model(self, **modkwargs: Any) -> LinearRegression:
        return LinearRegression(**modkwargs)

    def fit(self, model: Any, x: Any, y: Any = None, seconds: float = 1.0, **algkwargs: Any):
        time.sleep(seconds)
        return model.fit(x, y, **algkwargs)


class Endless(ModelWrapper):
    """A linear regression whose fit writes its process id to the file `mark` (if given), then
    sleeps `seconds` (for ever by default): a job only a timeout or a shutdown ends."""

    name = "endless"

    def make_model(self, **modkwargs: Any) -> LinearRegression:
        return LinearRegression(**modkwargs)

    def fit(self, model: Any, x: Any, y: Any = None, mark: str = "", seconds: float = 1e9):
        if mark:
            Path(mark).write_text(str(os.getpid()))
        time.sleep(seconds)
        return model.fit(x, y)


def endless_registry() -> Registry:
    """The endless and the slow fit, for servers whose jobs must outlast a timeout."""
    return Registry([Endless, Slow])


class SlowUpdate(ModelWrapper):
    """An SGD regressor whose updates take half a second: keeps a PATCHed version RUNNING."""

    name = "slow-sgd"

    def make_model(self, **modkwargs: Any) -> SGDRegressor:
        return SGDRegressor(**modkwargs)

    def update(self, model: Any, x: Any, y: Any = None) -> Any:
        time.sleep(0.5)
        return model.partial_fit(x, y)


class Failing(ModelWrapper):
    """A wrapper whose fit always fails, as a broken training job does."""

    name = "failing"

    def make_model(self, **modkwargs: Any) -> LinearRegression:
        return LinearRegression(**modkwargs)

    def fit(self, model: Any, x: Any, y: Any = None, **algkwargs: Any):
        raise RuntimeError("boom: the data cannot be fitted")


class Unpicklable(Serializer):
    """A serializer that cannot write anything."""

    name = "unpicklable"

    def dumps(self, model: Any, schema: Any = None) -> bytes:
        raise ValueError("cannot serialize this model")

    def loads(self, data: bytes) -> Any:
        raise AssertionError("never called")


class BadSerializer(ModelWrapper):
    """Fits fine, then fails to serialize."""

    name = "bad-serializer"
    serializer = Unpicklable()

    def make_model(self, **modkwargs: Any) -> LinearRegression:
        return LinearRegression(**modkwargs)


def registry() -> Registry:
    """Every model the tests use, freshly registered."""
    return Registry(
        [
            wrap_estimator(LogisticRegression, "logreg"),
            wrap_estimator(LinearRegression, "linreg"),
            wrap_estimator(SGDRegressor, "sgd", update="partial_fit"),
            wrap_estimator(KMeans, "kmeans"),
            Slow,
            SlowUpdate,
            Failing,
            BadSerializer,
        ]
    )


def classification(rows: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Well-separated two-class data with named columns and a non-default index."""
    rng = np.random.default_rng(seed)
    # Six decimals survive DataFrame.to_json (10 significant digits) exactly.
    x = pd.DataFrame(rng.normal(size=(rows, 3)).round(6), columns=["a", "b", "c"])
    x.index = x.index + 100
    y = pd.Series((x["a"] + 0.5 * x["b"] > 0).astype(int), name="label")
    return x, y


def regression(rows: int = 60, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """Noisy linear data with named columns, exact in pandas JSON."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 2)).round(6), columns=["u", "v"])
    noise = rng.normal(scale=0.1, size=rows)
    y = pd.Series((3.0 * x["u"] - 2.0 * x["v"] + noise).round(6), name="target")
    return x, y


def unsigned_quiet(err: str) -> str:
    """stderr without the "signing off" warning every server without signing keys logs."""
    return "".join(line for line in err.splitlines(True) if "event=signing_off" not in line)


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# -- round trips: the same calls in process (falcon's TestClient) and over real HTTP ---------

#: Where the calls go: an app's TestClient, a server's base URL, or anything with a `url`.
Target = Any


@contextlib.contextmanager
def in_process(
    models: Registry, store_url: str, **options: Any
) -> Iterator[falcon.testing.TestClient]:
    """An app serving `models` on a fresh SQLStore at `store_url` (`options` go to create_app),
    called in process; app and store are closed at the end."""
    store = SQLStore(store_url)
    app = create_app(models, store, **options)
    try:
        yield falcon.testing.TestClient(app)
    finally:
        app.close()
        store.close()


def request(target: Target, verb: str, model: str, **options: Any) -> Any:
    """One request to `/{model}`: a falcon Result in process, a requests Response over HTTP."""
    if isinstance(target, falcon.testing.TestClient):
        return target.simulate_request(verb, f"/{model}", **options)
    base = getattr(target, "url", target)
    return requests.request(verb, f"{base}/{model}", timeout=30, **options)


def answer(response: Any) -> Any:
    """The JSON body of a falcon Result or of a requests Response."""
    return response.json if isinstance(response, falcon.testing.Result) else response.json()


def fit_body(x: pd.DataFrame, y: pd.Series | pd.DataFrame | None = None, **params: Any) -> dict:
    """A PUT/PATCH body with `x` (and `y`) as pandas JSON text in `params`' orient (split
    unless it names one), plus `params`."""
    orient = params.setdefault("orient", "split")
    body = {"x": x.to_json(orient=orient), **params}
    if y is not None:
        body["y"] = y.to_json(orient=orient)
    return body


def predict_body(key: str, x: pd.DataFrame, **params: Any) -> dict:
    """A POST body asking `key` for predictions on `x`, in `params`' orient (split unless it
    names one)."""
    return fit_body(x, **{"model-key": key, **params})


def put(
    target: Target,
    model: str,
    x: pd.DataFrame,
    y: Any = None,
    *,
    expect: tuple[int, ...] = (200, 202),
    **params: Any,
) -> str:
    """PUT a training job (or find the one already there), asserting the answer's code is in
    `expect`; the model-key it answers."""
    response = request(target, "PUT", model, json=fit_body(x, y, **params))
    assert response.status_code in expect, (response.status_code, response.text)
    return answer(response)["model-key"]


def status(target: Target, model: str, key: str) -> dict:
    """GET the status body of a key."""
    return answer(request(target, "GET", model, params={"model-key": key}))


def settled(target: Target, model: str, key: str, timeout: float = 20.0) -> dict:
    """Poll a key's status until it is no longer RUNNING; that status body."""
    return wait_until(
        lambda: (s := status(target, model, key))["status"] != "RUNNING" and s, timeout
    )


def train(
    target: Target,
    model: str,
    x: pd.DataFrame,
    y: Any = None,
    *,
    expect: tuple[int, ...] = (202,),
    timeout: float = 20.0,
    **params: Any,
) -> tuple[str, dict]:
    """PUT a job (a new one: 202, unless `expect` says otherwise), then wait until it is no
    longer RUNNING: the key and its final status."""
    key = put(target, model, x, y, expect=expect, **params)
    return key, settled(target, model, key, timeout)


def predict(target: Target, model: str, key: str, x: pd.DataFrame, **params: Any) -> Any:
    """POST `x` to a key (`params` such as `method` added to the body); the raw response."""
    return request(target, "POST", model, json=predict_body(key, x, **params))


# -- the stored rows, read and written as a plain database client would -----------------------


def raw_sql(store_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on a plain DB-API connection to a store's database (sqlite3 or
    psycopg2, `?` placeholders on both) and commit; the rows it returns. For tests that
    tamper with stored rows on purpose, behind the store's back."""
    if store_url.startswith("sqlite:///"):
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    else:
        connection = psycopg2.connect(store_url)
        sql = sql.replace("?", "%s")
    try:
        cursor = connection.cursor()
        cursor.execute(sql.format(table=TABLE_NAME), params)
        rows = cursor.fetchall() if cursor.description else []
        connection.commit()
        return rows
    finally:
        connection.close()


def stored_keys(store_url: str, model: str) -> list[str]:
    """The keys a store holds versions of for `model`, read with a store of their own."""
    store = SQLStore(store_url)
    try:
        return [v.key for v in store.keys(model).items]
    finally:
        store.close()


def inputs_stored(store_url: str, model: str, key: str, number: int = 1) -> bool:
    """Whether version `number` of a key has its inputs stored (so that it can run again)."""
    store = SQLStore(store_url)
    try:
        version = store.version(model, key, number)
        return version is not None and bool(version.job)
    finally:
        store.close()


def drop_tables(url: str) -> None:
    """Drop every table a store creates, for tests that need a database without a store."""
    db = db_url.connect(url)
    with db.connection_context():
        for table in (ALIAS_TABLE, SCHEMA_TABLE, TABLE_NAME, DATASET_TABLE, LINK_TABLE):
            db.execute_sql(f"DROP TABLE IF EXISTS {table}")
    db.close()


def raw_integrity_errors() -> tuple[type[Exception], ...]:
    """What a plain connection raises when a statement breaks a constraint, on either backend."""
    return (sqlite3.IntegrityError, psycopg2.IntegrityError)


# -- server processes ----------------------------------------------------------------------

_SCRIPT = Path(sys.executable).with_name("ml-server")
#: How to run the CLI: the venv's console script, or the module where there is none.
ML_SERVER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mlserver.cli"]


def serve_command(store_url: str, *options: str, target: str | None = None) -> list[str]:
    """The `ml-server serve` command line of a test server: this module's registry unless
    `target` says otherwise, on a free port."""
    target = target or f"{Path(__file__)}:registry"
    return [*ML_SERVER, "serve", target, "--port", "0", "--store", store_url, *options]


def server_environment(env: dict | None = None) -> dict:
    """This process's environment without any MLSERVER_ setting, plus `env`: the tests choose
    every setting, none leaks in from the environment running them."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    return {**environ, **(env or {})}


class ServerProcess:
    """`ml-server serve` (this module's registry unless `target` says otherwise) on a store, in
    its own process, on a free port; `url` is where it listens. With `stderr`, what it writes
    there is kept for `communicate`."""

    def __init__(
        self,
        store_url: str,
        *options: str,
        target: str | None = None,
        env: dict | None = None,
        stderr: bool = False,
    ) -> None:
        self.process = subprocess.Popen(
            serve_command(store_url, *options, target=target),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr else None,
            text=True,
            env=server_environment(env),
        )
        line = self.process.stdout.readline()
        if " on http://" not in line:
            self.kill()
            raise AssertionError(f"server did not start: {line!r}")
        self.url = line.split(" on ")[1].split()[0]

    def terminate(self) -> str:
        """SIGTERM; the line the server answers it with."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.stdout.readline()

    def communicate(self, timeout: float = 60) -> tuple[int, str, str | None]:
        """Wait for the exit: its code, the rest of stdout, and stderr if kept (without the
        start-up warning of a server that signs nothing)."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, None if err is None else unsigned_quiet(err)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (a graceful stop by default) and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=30)
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        return self.stop(signal.SIGKILL)


# -- what several test files share beyond the round trips ------------------------------------


class Where(ModelWrapper):
    """A linear regression that records the process that fitted it."""

    name = "where"

    def make_model(self, **modkwargs):
        return LinearRegression(**modkwargs)

    def metadata(self, model, x, y=None):
        return {"pid": os.getpid()}


def where_source(cls: str = "Where", name: str = "where") -> str:
    """`Where`'s source as the class `cls` serving `name`, for the registry files the tests
    write (they import os, LinearRegression and ModelWrapper themselves)."""
    text = inspect.getsource(Where)
    return text.replace("class Where(", f"class {cls}(").replace('"where"', f'"{name}"')


def predictions(response: Any) -> np.ndarray:
    """The first column of a predict's answer (split orient), once it is asserted a 200."""
    assert response.status_code == 200, response.text
    return np.array([row[0] for row in json.loads(answer(response)["y"])["data"]])


def assert_startup_error(done: subprocess.CompletedProcess, says: str) -> None:
    """What a start-up problem the user can fix looks like: exit 2, nothing on stdout, one line
    on stderr (no traceback) that says `says`."""
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith("mlserver: error: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert says in done.stderr
