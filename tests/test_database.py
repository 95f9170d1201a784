"""The store against databases that misbehave: silent servers, a missing driver, NUL bytes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import falcon.testing
import pytest
import requests

from mlserver import create_app
from mlserver.errors import InvalidPayload, StoreError
from mlserver.store import SQLStore
from support import (
    ServerProcess,
    fit_body,
    predict_body,
    put,
    registry,
    regression,
    serve_command,
    server_environment,
    settled,
    status,
    wait_until,
)

#: The store timeout these tests configure, in seconds.
TIMEOUT = 2.0
#: What a refused call may take beyond it here (a loaded 2-core machine; libpq's connect
#: timeout is at least 2 s).
MARGIN = 3.0
X, Y = regression()


class Proxy:
    """A TCP proxy on a free local port to `target` (None: a blackhole).

    A blackhole accepts connections and never answers. `silence()` makes a forwarding proxy
    stop relaying, both ways, while every connection stays open (data sent is dropped), and
    holds new connections the same way; `resume()` forwards new connections again.
    """

    def __init__(self, target: tuple[str, int] | None) -> None:
        self.target = target
        self.silent = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database_url: str) -> str:
        """`database_url` pointed at this proxy."""
        parsed = urlparse(database_url)
        credentials = parsed.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return parsed._replace(netloc=netloc).geturl()

    def silence(self) -> None:
        self.silent.set()

    def resume(self) -> None:
        self.silent.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.target is None or self.silent.is_set():
                threading.Thread(target=self._drain, args=(client,), daemon=True).start()
                continue
            upstream = socket.create_connection(self.target)
            self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _drain(self, source: socket.socket) -> None:
        """Read and drop everything: the peer's kernel sees a live connection."""
        try:
            while source.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.silent.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def postgres_address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 5432


def timed(call):
    """(result or exception, seconds) of `call()`."""
    started = time.monotonic()
    try:
        outcome = call()
    except Exception as exc:
        outcome = exc
    return outcome, time.monotonic() - started


# -- a database that stops answering ---------------------------------------------------------


def test_a_blackholed_database_fails_store_calls_within_the_timeout(postgres_url):
    """A server that accepts connections and never answers: ping, a claim and a heartbeat
    (the heartbeat thread's call) each raise StoreError within the timeout, not never."""
    proxy = Proxy(None)
    store = SQLStore(proxy.url(postgres_url), timeout=TIMEOUT)
    try:
        for call in (
            store.ping,
            lambda: store.claim("m", "k", worker="w", lease_seconds=30, retrain=False),
            lambda: store.heartbeat("w", 30),
        ):
            outcome, seconds = timed(call)
            assert isinstance(outcome, StoreError), outcome
            assert seconds < TIMEOUT + MARGIN, seconds
    finally:
        store.close()
        proxy.close()


def test_a_pooled_connection_that_goes_silent_fails_within_the_timeout(postgres_url):
    """A pooled connection whose server stops answering mid-session fails the next call in
    about the timeout, naming it; concurrent calls too; once the server answers again, the
    store works without a restart (the broken connections were dropped)."""
    proxy = Proxy(postgres_address(postgres_url))
    store = SQLStore(proxy.url(postgres_url), timeout=TIMEOUT)
    try:
        claim = store.claim("m", "k", worker="w", lease_seconds=30, retrain=False)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # four pooled connections
            list(pool.map(lambda _: store.newest("m", "k"), range(8)))
        proxy.silence()
        outcome, seconds = timed(lambda: store.newest("m", "k"))
        assert isinstance(outcome, StoreError) and "did not answer within 2 s" in str(outcome)
        assert seconds < TIMEOUT + MARGIN, seconds
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: timed(lambda: store.newest("m", "k")), range(6)))
        assert all(isinstance(outcome, StoreError) for outcome, _ in results), results
        assert max(seconds for _, seconds in results) < TIMEOUT + MARGIN, results
        proxy.resume()
        assert store.newest("m", "k").id == claim.version.id
    finally:
        store.close()
        proxy.close()


@pytest.mark.slow
def test_requests_answer_503_within_seconds_when_the_database_goes_silent(postgres_url):
    """Through `ml-server serve` and real HTTP: once PostgreSQL stops answering, a predict
    (its pooled connection), the next one (a fresh connection) and /ready answer 503 within a
    few seconds, and the server serves again once the database answers."""
    proxy = Proxy(postgres_address(postgres_url))
    server = ServerProcess(
        proxy.url(postgres_url), "--database-timeout-seconds", str(TIMEOUT), "--threads", "4"
    )
    try:
        key = put(server, "linreg", X, Y)
        wait_until(lambda: status(server, "linreg", key)["status"] == "FINISHED")
        assert requests.post(
            f"{server.url}/linreg", json=predict_body(key, X.head(2)), timeout=30
        ).ok
        proxy.silence()
        time.sleep(1.1)  # past freshness_seconds: predict asks the store again
        for request in (
            lambda: requests.post(
                f"{server.url}/linreg", json=predict_body(key, X.head(2)), timeout=30
            ),
            lambda: requests.post(
                f"{server.url}/linreg", json=predict_body(key, X.head(2)), timeout=30
            ),
            lambda: requests.get(f"{server.url}/ready", timeout=30),
            lambda: requests.put(
                f"{server.url}/linreg", json=fit_body(X, Y, name="new"), timeout=30
            ),
        ):
            response, seconds = timed(request)
            assert response.status_code == 503, response.text
            assert response.json()["title"] == "Store unavailable"
            assert seconds < TIMEOUT + MARGIN, seconds
        proxy.resume()
        answer = requests.post(
            f"{server.url}/linreg", json=predict_body(key, X.head(2)), timeout=30
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
        proxy.close()


FLAGS = ("--database-timeout-seconds", str(TIMEOUT))


@pytest.mark.slow
def test_serve_on_a_blackholed_database_exits_within_seconds(postgres_url):
    """`ml-server serve` on a database that never answers stops at start-up with one line
    saying so, instead of hanging."""
    proxy = Proxy(None)
    try:
        started = time.monotonic()
        done = subprocess.run(
            serve_command(proxy.url(postgres_url), *FLAGS),
            capture_output=True,
            text=True,
            timeout=60,
            env=server_environment(),
        )
        assert time.monotonic() - started < TIMEOUT + MARGIN + 10  # + the interpreter's start
        assert done.returncode == 2
        assert done.stderr.startswith("mlserver: error: store postgresql://***@127.0.0.1:")
        assert "is not usable" in done.stderr and "timeout expired" in done.stderr
    finally:
        proxy.close()


def test_a_locked_sqlite_database_is_a_503_within_the_timeout(sqlite_url):
    """A SQLite file another process holds the write lock on: a PUT waits the busy timeout
    (the store timeout), then answers 503, and stores nothing."""
    app = create_app(registry(), SQLStore(sqlite_url, timeout=TIMEOUT))
    client = falcon.testing.TestClient(app)
    try:
        assert client.simulate_get("/ready").status_code == 200  # creates the schema
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            response, seconds = timed(lambda: client.simulate_put("/linreg", json=fit_body(X, Y)))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert response.status_code == 503, response.json
        assert TIMEOUT - 0.5 < seconds < TIMEOUT + MARGIN, seconds
        assert client.simulate_get("/linreg").json["keys"] == []
    finally:
        app.close()


# -- no driver ------------------------------------------------------------------------------


@pytest.mark.slow
def test_postgres_without_its_driver_names_the_extra_to_install():
    """With psycopg2 (and psycopg) not importable, a postgresql:// store is a
    ConfigurationError that says which extra to install."""
    script = (
        "import sys\n"
        "sys.modules['psycopg2'] = sys.modules['psycopg'] = None\n"
        "from mlserver.errors import ConfigurationError\n"
        "from mlserver.store import SQLStore\n"
        "try:\n"
        "    SQLStore('postgresql://user@127.0.0.1:1/db')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "a postgresql:// store needs the PostgreSQL driver: pip install 'ml-server[postgres]'"
    )


# -- NUL characters -------------------------------------------------------------------------

NUL_KEY = "abc\x00def"


def test_the_store_refuses_nul_in_keys_on_every_backend(store):
    """Every store call taking a key refuses a NUL in it alike on both backends (PostgreSQL
    text cannot hold one), naming the parameter."""
    calls = [
        lambda: store.claim("m", NUL_KEY, worker="w", lease_seconds=30, retrain=False),
        lambda: store.claim_update("m", NUL_KEY, worker="w", lease_seconds=30),
        lambda: store.newest("m", NUL_KEY),
        lambda: store.delete("m", NUL_KEY),
        lambda: store.keys("m\x00"),
        lambda: store.versions("m", NUL_KEY),
        lambda: store.version("m", NUL_KEY, 1),
        lambda: store.aliases("m", NUL_KEY),
        lambda: store.resolve("m", NUL_KEY),
        lambda: store.set_alias("m", NUL_KEY, "a", 1),
        lambda: store.delete_alias("m", NUL_KEY, "a"),
        lambda: store.delete_version("m", NUL_KEY, 1),
    ]
    for call in calls:
        with pytest.raises(InvalidPayload, match="must not contain NUL") as raised:
            call()
        assert raised.value.parameter in ("model-key", "model")


@pytest.mark.slow
def test_nul_in_a_model_key_is_a_400_on_every_verb(store_url):
    """Through real HTTP on each backend, a NUL in the model-key (body or query) is a 400
    naming model-key on every verb; a NUL in a name, a column name, a target name or kwargs
    is no 500 either, and the server keeps serving."""
    server = ServerProcess(store_url)
    try:
        base = f"{server.url}"
        x, y = regression()
        key = {"model-key": NUL_KEY}
        requests_ = [
            ("GET", "/linreg", {"params": key}),
            ("DELETE", "/linreg", {"params": key}),
            ("DELETE", "/linreg", {"json": key}),
            ("POST", "/linreg", {"json": predict_body(NUL_KEY, X.head(2))}),
            ("PATCH", "/sgd", {"json": {**fit_body(X, Y), **key}}),
        ]
        for method, path, options in requests_:
            response = requests.request(method, base + path, timeout=30, **options)
            assert response.status_code == 400, (method, response.text)
            assert response.json()["parameter"] == "model-key"
            assert "NUL" in response.json()["description"]

        odd = {
            "name": {**fit_body(X, Y), "name": "a\x00name"},
            "column": {
                "x": x.rename(columns={"u": "u\x00"}).to_json(orient="split"),
                "y": y.to_json(orient="split"),
                "orient": "split",
            },
            "target": {
                "x": x.to_json(orient="split"),
                "y": y.rename("t\x00").to_json(orient="split"),
                "orient": "split",
            },
            "algkwargs": {**fit_body(X, Y), "algkwargs": {"n\x00": 1}},
        }
        keys = {}
        for what, body in odd.items():
            response = requests.put(f"{base}/linreg", json=body, timeout=30)
            assert response.status_code in (200, 202, 400), (what, response.text)
            if response.status_code != 400:
                keys[what] = response.json()["model-key"]
        for what, found in keys.items():
            state = settled(base, "linreg", found)
            assert state["status"] in ("FINISHED", "FAILED"), (what, state)
        assert settled(base, "linreg", keys["name"])["metadata"]["name"] == "a\x00name"
        # The fit refused the kwarg; its message quotes the NUL, escaped.
        assert "'n\\x00'" in settled(base, "linreg", keys["algkwargs"])["error"]
        assert requests.get(f"{base}/ready", timeout=30).status_code == 200
    finally:
        server.stop()
