"""ModelClient against a real waitress server in this process, on a SQLite file; no mocks."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import waitress
from sklearn.linear_model import LinearRegression, LogisticRegression
from waitress import wasyncore

from mlserver import create_app
from mlserver.client import (
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    MethodNotAllowed,
    ModelClient,
    NotFound,
    RequestTooLarge,
    ServerError,
    ServerFailure,
    TrainingFailed,
    Unprocessable,
    WaitTimeout,
)
from mlserver.errors import MLServerError
from mlserver.store import SQLStore
from support import classification, registry, regression

Serve = Callable[[Any], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a WSGI app on a free local port with waitress; every one is stopped at teardown."""
    running: list[tuple[Any, threading.Thread, Any]] = []

    def start(app: Any) -> str:
        server = waitress.create_server(app, host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread, app))
        return f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server, thread, app in running:
        stop(server, thread)
        if hasattr(app, "close"):
            app.close()


def stop(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server running in `thread`, without racing its event loop.

    NOTE: closing sockets from this thread races the loop's select() (EBADF, or worse a reused
    fd). The loop closes them itself, and leaves its trigger open until it has ended, since
    the trigger is what this thread writes to when it asks.
    """
    server.task_dispatcher.shutdown(timeout=5)

    def close_in_loop() -> None:
        for channel in list(server._map.values()):
            if channel is server:  # not server.close(): that closes the trigger too
                wasyncore.dispatcher.close(server)
            elif channel is not server.trigger:
                channel.handle_close()
        server.trigger.del_channel()  # the map is empty now: the loop ends

    server.trigger.pull_trigger(close_in_loop)
    thread.join(timeout=5)
    assert not thread.is_alive(), "waitress did not stop"
    server.trigger.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SQLStore]:
    """A store on a SQLite file; set up before `serve`, so closed after the server stopped."""
    with contextlib.closing(SQLStore(sqlite_url)) as store:
        yield store


@pytest.fixture
def make_client(sqlite_store: SQLStore, serve: Serve) -> Iterator[Callable[..., ModelClient]]:
    """Clients on one mlserver app (test registry, the SQLite store), started on first use."""
    clients: list[ModelClient] = []
    urls: list[str] = []

    def make(model: str, **options: Any) -> ModelClient:
        if not urls:
            urls.append(serve(create_app(registry(), sqlite_store, **options)))
        client = ModelClient(urls[0], model)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound by this process but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def recording_app(seen: list[dict[str, Any]], status: str = "200 OK") -> Callable[..., Any]:
    """A bare WSGI app that records each request's headers and answers an empty key list."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append({"authorization": environ.get("HTTP_AUTHORIZATION")})
        if status.startswith("200"):
            body = json.dumps({"model": "m", "keys": []}).encode()
            start_response(status, [("Content-Type", "application/json")])
        else:
            body = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
            start_response(status, [("Content-Type", "text/html")])
        return [body]

    return app


# ---------------------------------------------------------------------------------------------
# fit and predict


def test_fit_predict_equals_scikit_learn_labels(make_client):
    """fit + predict answer exactly the labels LogisticRegression predicts in process."""
    client = make_client("logreg")
    x, y = classification()
    key = client.fit(x, y)
    predicted = client.predict(x, key)
    assert isinstance(predicted, pd.Series)
    expected = LogisticRegression().fit(x, y).predict(x)
    np.testing.assert_array_equal(predicted.to_numpy(), expected)
    assert predicted.index.equals(x.index)
    assert predicted.attrs["version"] == 1


def test_linear_regression_predictions_are_bit_for_bit(make_client):
    """Unrounded float64 data and predictions survive the round trip with every bit intact."""
    client = make_client("linreg")
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(50, 3)) / 3, columns=["p", "q", "r"])
    y = pd.Series(x @ [1.0 / 3, -2.0 / 7, 0.1] + rng.normal(scale=1e-3, size=50), name="t")
    # The frames need more than pandas' default 10 digits, so a lossy encoding would show.
    lossy = pd.read_json(io.StringIO(x.to_json(orient="split")), orient="split")
    assert not np.array_equal(lossy.to_numpy(), x.to_numpy())

    key = client.fit(x, y)
    predicted = client.predict(x, key)
    expected = LinearRegression().fit(x, y).predict(x)
    assert predicted.dtype == np.float64
    # Some ulps, not bit for bit: BLAS may sum in another order for another memory layout;
    # a 10-digit encoding would be ~1e6 ulps off.
    np.testing.assert_array_max_ulp(predicted.to_numpy(), expected, maxulp=256)


def test_predictions_align_to_a_shuffled_index(make_client):
    """Predictions for shuffled rows with string labels come back on exactly those labels."""
    client = make_client("linreg")
    x, y = regression()
    x.index = y.index = [f"row-{i}" for i in range(len(x))]
    key = client.fit(x, y)
    shuffled = x.sample(frac=1, random_state=3)
    assert not shuffled.index.equals(x.index)
    predicted = client.predict(shuffled, key)
    assert predicted.index.equals(shuffled.index)
    expected = pd.Series(LinearRegression().fit(x, y).predict(x), index=x.index)
    np.testing.assert_array_equal(predicted.to_numpy(), expected.loc[shuffled.index].to_numpy())


def test_target_name_is_kept(make_client):
    """Predictions are named after y: a Series' name, a one-column frame's column, else "y"."""
    client = make_client("linreg")
    x, y = regression()
    assert client.predict(x, client.fit(x, y.rename("price"))).name == "price"
    one_column = y.to_frame("cost")
    assert client.predict(x, client.fit(x, one_column)).name == "cost"
    assert client.predict(x, client.fit(x, y.rename(None))).name == "y"


def test_multi_output_target_comes_back_as_a_frame(make_client):
    """A two-column y gives a DataFrame of predictions with y's columns, on x's index."""
    client = make_client("linreg")
    x, y = regression()
    targets = pd.DataFrame({"a": y, "b": -2 * y})
    predicted = client.predict(x, client.fit(x, targets))
    assert isinstance(predicted, pd.DataFrame)
    assert list(predicted.columns) == ["a", "b"]
    expected = LinearRegression().fit(x, targets).predict(x)
    np.testing.assert_array_equal(predicted.to_numpy(), expected)


def test_same_fit_returns_same_key_and_retrain_adds_a_version(make_client):
    """Fitting the same data again returns the same key; retrain=True trains version 2."""
    client = make_client("linreg")
    x, y = regression()
    key = client.fit(x, y)
    assert client.fit(x, y) == key
    assert client.status(key)["version"] == 1
    assert client.fit(x, y, retrain=True) == key
    assert client.status(key)["version"] == 2


def test_name_gives_the_key_of_the_name(make_client):
    """Two different data sets fitted under one name share one key."""
    client = make_client("linreg")
    x, y = regression()
    first = client.fit(x, y, name="sales")
    second = client.fit(x.head(30), y.head(30), name="sales", retrain=True)
    assert first == second
    assert client.status(first)["metadata"]["rows"] == 30


def test_failed_training_raises_training_failed(make_client):
    """A FAILED version raises TrainingFailed carrying the server's error text."""
    client = make_client("failing")
    x, y = regression()
    with pytest.raises(TrainingFailed) as caught:
        client.fit(x, y)
    assert "boom: the data cannot be fitted" in caught.value.error
    assert "boom: the data cannot be fitted" in str(caught.value)
    assert caught.value.version == 1
    assert client.status(caught.value.key)["status"] == "FAILED"
    with pytest.raises(Conflict) as conflict:
        client.predict(x, caught.value.key)
    assert conflict.value.status == "FAILED"


def test_wait_false_returns_while_training_runs(make_client):
    """fit(wait=False) answers at once with a key whose version is still RUNNING."""
    client = make_client("slow")
    x, y = regression()
    started = time.monotonic()
    key = client.fit(x, y, algkwargs={"seconds": 1.0}, wait=False)
    assert time.monotonic() - started < 0.9
    assert client.status(key)["status"] == "RUNNING"


def test_wait_timeout_bounds_the_wait(make_client):
    """fit with wait_timeout raises WaitTimeout once that much time passed, training goes on."""
    client = make_client("slow")
    x, y = regression()
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.fit(x, y, algkwargs={"seconds": 1.0}, wait_timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 0.9
    assert caught.value.state["status"] == "RUNNING"
    assert client.status(caught.value.key)["status"] == "RUNNING"


def test_progress_goes_to_stderr_only_when_asked(make_client, capsys):
    """Waiting prints nothing by default; progress=True reports RUNNING and the end on stderr."""
    client = make_client("slow")
    x, y = regression()
    client.fit(x, y, algkwargs={"seconds": 0.3})
    assert capsys.readouterr() == ("", "")
    key = client.fit(x, y, algkwargs={"seconds": 0.3}, retrain=True, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert f"slow {key[:8]} v2 RUNNING" in err
    assert re.search(r"v2 FINISHED after \d+\.\d s", err)


def test_update_changes_predictions_and_bumps_the_version(make_client):
    """update on an SGD model returns version 2, which then answers with new predictions."""
    client = make_client("sgd")
    x, y = regression()
    key = client.fit(x, y, modkwargs={"random_state": 0})
    before = client.predict(x.head(5), key)
    version = client.update(x, -y, key)
    assert version == 2
    assert client.status(key)["status"] == "FINISHED"
    after = client.predict(x.head(5), key)
    assert after.attrs["version"] == 2
    assert not np.array_equal(before.to_numpy(), after.to_numpy())


def test_delete_returns_the_count_then_not_found(make_client):
    """delete answers how many versions went, after which the key is unknown."""
    client = make_client("linreg")
    x, y = regression()
    key = client.fit(x, y)
    client.fit(x, y, retrain=True)
    assert client.delete(key) == 2
    with pytest.raises(NotFound):
        client.status(key)
    with pytest.raises(NotFound):
        client.delete(key)


def test_keys_lists_the_newest_version_of_every_key(make_client):
    """keys() lists each key of the model once, with its newest version and status."""
    client = make_client("linreg")
    assert client.keys() == []
    x, y = regression()
    first = client.fit(x, y, name="first")
    second = client.fit(x, y, name="second")
    client.fit(x, y, name="second", retrain=True)
    entries = client.keys()
    listed = {entry["model-key"]: entry for entry in entries}
    assert set(listed) == {first, second}
    assert listed[second]["version"] == 2 and listed[second]["status"] == "FINISHED"


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_modkwargs_is_bad_request(make_client):
    """make_model rejecting modkwargs raises BadRequest naming the parameter; nothing is stored."""
    client = make_client("linreg")
    x, y = regression()
    with pytest.raises(BadRequest) as caught:
        client.fit(x, y, modkwargs={"bogus": 1})
    error = caught.value
    assert isinstance(error, ServerError) and isinstance(error, MLServerError)
    assert error.status_code == 400 and error.title == "Invalid parameter"
    assert "bogus" in error.description and error.parameter == "modkwargs"
    assert error.body["parameter"] == "modkwargs"
    assert client.keys() == []


def test_unknown_model_and_key_are_not_found(make_client):
    """An unregistered model and a key with no versions both raise NotFound (404)."""
    x, y = regression()
    with pytest.raises(NotFound) as model:
        make_client("nope").fit(x, y)
    assert model.value.status_code == 404 and model.value.title == "Unknown model"
    client = make_client("linreg")
    with pytest.raises(NotFound) as key:
        client.predict(x, "0" * 32)
    assert key.value.title == "Unknown model-key" and "0" * 32 in key.value.description


def test_update_without_server_support_is_method_not_allowed(make_client):
    """PATCH on linreg raises MethodNotAllowed listing the verbs the model takes."""
    client = make_client("linreg")
    x, y = regression()
    key = client.fit(x, y)
    with pytest.raises(MethodNotAllowed) as caught:
        client.update(x, y, key)
    assert caught.value.status_code == 405
    assert caught.value.allowed == ("GET", "PUT", "POST", "DELETE")
    assert client.status(key)["version"] == 1


def test_predict_while_training_is_conflict_with_status(make_client):
    """Predicting before any version finished raises Conflict whose status is RUNNING."""
    client = make_client("slow")
    x, y = regression()
    key = client.fit(x, y, algkwargs={"seconds": 1.0}, wait=False)
    with pytest.raises(Conflict) as caught:
        client.predict(x, key)
    assert caught.value.status_code == 409
    assert caught.value.status == "RUNNING"


def test_wrong_columns_are_unprocessable(make_client):
    """x with other columns than in training raises Unprocessable listing the differences."""
    client = make_client("linreg")
    x, y = regression()
    key = client.fit(x, y)
    with pytest.raises(Unprocessable) as caught:
        client.predict(x.rename(columns={"v": "w"}), key)
    assert caught.value.status_code == 422
    assert caught.value.missing == ["v"] and caught.value.unexpected == ["w"]


def test_predict_proba_gives_one_column_per_class(make_client):
    """method="predict_proba" gives sklearn's probabilities (to the ulp), one column per class."""
    client = make_client("logreg")
    x, y = classification()
    key = client.fit(x, y)
    shuffled = x.sample(frac=1, random_state=1)
    probabilities = client.predict(shuffled, key, method="predict_proba")
    assert isinstance(probabilities, pd.DataFrame)
    assert list(probabilities.columns) == [0, 1]
    assert probabilities.index.equals(shuffled.index)
    expected = LogisticRegression().fit(x, y).predict_proba(shuffled)
    np.testing.assert_array_max_ulp(probabilities.to_numpy(), expected, maxulp=256)


def test_unknown_method_is_bad_request(make_client):
    """A method the server does not offer raises BadRequest naming the parameter "method"."""
    client = make_client("logreg")
    x, y = classification()
    key = client.fit(x, y)
    with pytest.raises(BadRequest) as caught:
        client.predict(x, key, method="fit")
    assert caught.value.parameter == "method" and "fit" in caught.value.description


def test_body_above_the_limit_is_request_too_large(make_client):
    """A body larger than the server's max_body_bytes raises RequestTooLarge (413)."""
    client = make_client("linreg", max_body_bytes=2_000)
    x, y = regression(rows=500)
    with pytest.raises(RequestTooLarge) as caught:
        client.fit(x, y)
    assert caught.value.status_code == 413


def test_x_that_is_not_a_frame_is_refused_before_sending(refused_port):
    """An ndarray x raises TypeError at once, without any request (the port would refuse)."""
    url = f"http://127.0.0.1:{refused_port}"
    with (
        ModelClient(url, "linreg") as client,
        pytest.raises(TypeError, match="x must be a pandas DataFrame"),
    ):
        client.fit(np.zeros((3, 2)), pd.Series([1.0, 2.0, 3.0]))


def test_connection_refused_names_the_url(refused_port):
    """A server that is not there raises ConnectionFailed naming the URL and the reason."""
    url = f"http://127.0.0.1:{refused_port}"
    with ModelClient(url, "linreg") as client, pytest.raises(ConnectionFailed) as caught:
        client.status("0" * 32)
    assert isinstance(caught.value, ClientError)
    assert f"{url}/linreg" in str(caught.value) and caught.value.url == f"{url}/linreg"
    assert "refused" in str(caught.value).lower()


def test_token_is_sent_as_a_bearer_header(serve):
    """A token goes out as `Authorization: Bearer <token>`; without one, no header at all."""
    seen: list[dict[str, Any]] = []
    url = serve(recording_app(seen))
    with ModelClient(url, "m", token="s3cret") as client:
        assert client.keys() == []
    with ModelClient(url, "m") as client:
        client.keys()
    assert seen == [{"authorization": "Bearer s3cret"}, {"authorization": None}]


def test_an_error_page_that_is_not_json_is_a_server_failure(serve):
    """A 502 HTML page (a proxy's) still raises a typed ServerFailure with status and title."""
    url = serve(recording_app([], status="502 Bad Gateway"))
    with ModelClient(url, "m") as client, pytest.raises(ServerFailure) as caught:
        client.keys()
    assert caught.value.status_code == 502 and caught.value.title == "Bad Gateway"
    assert "nginx" in caught.value.description


def test_auth_errors_are_typed(sqlite_store, serve):
    """401 without a token and 403 with a token lacking the scope raise their own classes."""
    from mlserver.client import Forbidden, Unauthorized
    from mlserver.http.auth import hash_token

    app = create_app(registry(), sqlite_store, tokens={hash_token("reader"): "predict"})
    url = serve(app)
    x, y = regression()
    with ModelClient(url, "linreg") as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.fit(x, y)
    assert refused.value.status_code == 401
    with ModelClient(url, "linreg", token="reader") as reader, pytest.raises(Forbidden) as denied:
        reader.fit(x, y)
    assert denied.value.status_code == 403 and "train" in denied.value.description


def test_class_labels_that_spell_integers_stay_strings(make_client):
    """A classifier trained on the labels "1" and "2" answers probabilities in columns "1"
    and "2", not the integers 1 and 2."""
    client = make_client("logreg")
    x, y = classification()
    labels = y.map({0: "1", 1: "2"})
    key = client.fit(x, labels)
    probabilities = client.predict(x, key, method="predict_proba")
    assert list(probabilities.columns) == ["1", "2"]
    assert (
        client.predict(x, key).tolist() == LogisticRegression().fit(x, labels).predict(x).tolist()
    )


def test_importing_the_client_loads_no_server_stack():
    """A script that only talks to a server does not pay for falcon, peewee, prometheus or
    scikit-learn: a fresh interpreter imports `mlserver.client` without them."""
    import subprocess
    import sys

    server_only = ["falcon", "peewee", "playhouse", "prometheus_client", "sklearn", "waitress"]
    code = (
        "import sys, mlserver.client;"
        f"print(','.join(name for name in {server_only!r} if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
