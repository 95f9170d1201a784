"""Adaptive batching: predicts that wait while their model is busy are stacked into one model
call, and each gets exactly its own rows back; nothing waits when nothing is queued; one
request's bad rows never fail another's; floats are the model's own on the stacked rows
(within a few ulps of unbatched ones: BLAS rounds by batch size)."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlserver import ModelWrapper, Registry, wrap_estimator
from mlserver.batching import Batches, split, stack
from mlserver.frames.rows import Rows
from support import classification, in_process, predictions, train

PAUSE = 0.05  # seconds a slow predict takes: long enough for others to queue behind it


class SlowLogistic(ModelWrapper):
    """A LogisticRegression whose predicts take PAUSE seconds per call, however many rows."""

    name = "slow-logistic"

    def make_model(self, **modkwargs):
        return LogisticRegression(**modkwargs)

    def apply(self, model, x, method="predict"):
        time.sleep(PAUSE)
        return getattr(model, method)(x)


class SlowOnnx(SlowLogistic):
    """The same through an onnxruntime session."""

    name = "slow-onnx"
    serializer = "onnx"


class SlowColours(ModelWrapper):
    """A pipeline on a text column: its rows stack as frames, not arrays."""

    name = "slow-colours"

    def make_model(self, **modkwargs):
        from sklearn.compose import make_column_transformer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        encode = make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough")
        return make_pipeline(encode, LogisticRegression())

    def predict(self, model, x):
        time.sleep(PAUSE)
        return model.predict(x)


class Whole(SlowLogistic):
    """The same, for a predict that needs each request on its own."""

    name = "whole"
    batchable = False


def models() -> Registry:
    return Registry(
        [
            SlowLogistic(),
            SlowOnnx(),
            SlowColours(),
            Whole(),
            wrap_estimator(LogisticRegression, "logreg"),
        ]
    )


def _rows(values: np.ndarray) -> Rows:
    return Rows(values, ["a", "b"], conformed=True)


def test_a_request_that_finds_its_model_idle_runs_at_once_alone():
    batches = Batches(max_rows=64)
    seen = []
    batches.observers.append(seen.append)
    calls = []

    def call(rows: Rows) -> np.ndarray:
        calls.append(rows.shape[0])
        return rows.array.sum(axis=1)

    started = time.perf_counter()
    got = batches.run("k", _rows(np.array([[1.0, 2.0]])), call)
    assert time.perf_counter() - started < 0.05  # no delay when nothing is queued
    assert got.tolist() == [3.0] and calls == [1]
    assert seen[0].requests == 1 and seen[0].rows == 1
    assert batches._queues == {}  # an idle model keeps nothing


def test_requests_queued_behind_a_busy_model_are_stacked_and_get_their_own_rows():
    batches = Batches(max_rows=1000)
    seen = []
    batches.observers.append(seen.append)
    calls = []
    first_started = threading.Event()

    def call(rows: Rows) -> np.ndarray:
        calls.append(rows.shape[0])
        first_started.set()
        time.sleep(PAUSE)
        return rows.array[:, 0] * 10 + rows.array[:, 1]

    def one(i: int) -> list[float]:
        values = np.array([[i, r] for r in range(i % 3 + 1)], dtype=float)
        return batches.run("k", _rows(values), call).tolist()

    with ThreadPoolExecutor(12) as pool:
        head = pool.submit(one, 0)
        first_started.wait(5)
        rest = [pool.submit(one, i) for i in range(1, 12)]
        answers = [head.result(), *(f.result() for f in rest)]
    for i, answer in enumerate(answers):
        assert answer == [i * 10 + r for r in range(i % 3 + 1)]
    # The first alone; the others, queued meanwhile, in as few calls as their arrival allows
    # (one, unless the machine is slow enough that some arrive after that call started).
    assert calls[0] == 1 and len(calls) < 12
    assert sum(calls) == sum(i % 3 + 1 for i in range(12))
    stacked = max(seen[1:], key=lambda batch: batch.requests)
    assert stacked.requests > 1 and stacked.waited > 0


def test_a_stacked_call_never_takes_more_than_max_rows():
    batches = Batches(max_rows=4)
    calls = []
    gate = threading.Event()

    def call(rows: Rows) -> np.ndarray:
        calls.append(rows.shape[0])
        gate.wait(5)
        return rows.array[:, 0]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batches.run, "k", _rows(np.full((1, 2), i)), call) for i in range(8)]
        time.sleep(0.1)  # all eight queued behind the first
        gate.set()
        got = [f.result()[0] for f in futures]
    assert got == list(range(8))
    assert max(calls) <= 4 and sum(calls) == 8


def test_one_requests_bad_rows_never_fail_another(store_url):
    x, y = classification()
    with in_process(models(), store_url) as client:
        key, _ = train(client, "slow-logistic", x, y)
        model = LogisticRegression().fit(x, y)
        holes = x.head(2).copy()
        holes.iloc[0, 0] = np.nan  # LogisticRegression refuses NaN

        def post(frame: pd.DataFrame):
            body = {"model-key": key, "x": frame.to_json(orient="split"), "orient": "split"}
            return client.simulate_post("/slow-logistic", json=body)

        with ThreadPoolExecutor(8) as pool:
            head = pool.submit(post, x.head(1))
            time.sleep(PAUSE / 2)
            parts = [x.iloc[i : i + 3] for i in range(0, 18, 3)]
            good = [pool.submit(post, part) for part in parts]
            bad = pool.submit(post, holes)
            assert head.result().status_code == 200
            refused = bad.result()
            answers = [f.result() for f in good]
        assert refused.status_code == 422 and "NaN" in refused.json["description"]
        for part, answer in zip(parts, answers, strict=True):
            np.testing.assert_array_equal(predictions(answer), model.predict(part))


def test_stacked_answers_over_http_are_each_requests_own(store_url):
    x, y = classification(rows=200)
    with in_process(models(), store_url) as client:
        key, _ = train(client, "slow-logistic", x, y)
        model = LogisticRegression().fit(x, y)

        def post(start: int):
            part = x.iloc[start : start + 5]
            body = {
                "model-key": key,
                "x": part.to_json(orient="split"),
                "orient": "split",
                "method": "predict_proba",
            }
            answer = client.simulate_post("/slow-logistic", json=body)
            assert answer.status_code == 200, answer.text
            got = pd.read_json(io.StringIO(answer.json["y"]), orient="split", precise_float=True)
            return part, got

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, range(0, 200, 5)))
        for part, got in results:
            assert got.index.tolist() == part.index.tolist()  # its own rows, its own index
            # within a few ulps of the model's own answer on these rows alone
            np.testing.assert_allclose(got.to_numpy(), model.predict_proba(part), rtol=1e-9)
        text = client.simulate_get("/metrics").text
        stacked = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('mlserver_batch_requests_bucket{le="1.0"}')
        ]
        calls = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("mlserver_batch_requests_count")
        ]
        assert calls and stacked and stacked[0] < calls[0] < 40  # some calls answered several


def _stacked_calls(client) -> tuple[float, float]:
    """(model calls, requests they answered) from the metrics."""
    text = client.simulate_get("/metrics").text
    found = {}
    for line in text.splitlines():
        for name in ("mlserver_batch_requests_count", "mlserver_batch_requests_sum"):
            if line.startswith(name):
                found[name] = float(line.split()[-1])
    return found["mlserver_batch_requests_count"], found["mlserver_batch_requests_sum"]


def test_onnx_sessions_and_dataframe_wrappers_stack_too(store_url):
    rng = np.random.default_rng(6)
    frames = pd.DataFrame(
        {"colour": rng.choice(["red", "blue"], 120), "size": rng.normal(size=120)}
    )
    labels = pd.Series((frames["colour"] == "red") & (frames["size"] > 0), name="keep")
    x, y = classification(rows=120)
    with in_process(models(), store_url) as client:
        for model, data, target in (("slow-onnx", x, y), ("slow-colours", frames, labels)):
            key, state = train(client, model, data, target)
            assert state["status"] == "FINISHED", state
            fitted = (SlowColours() if model == "slow-colours" else SlowLogistic()).make_model()
            fitted.fit(data, target)

            def post(start: int, model=model, key=key, data=data):
                part = data.iloc[start : start + 4]
                body = {"model-key": key, "x": part.to_json(orient="split"), "orient": "split"}
                answer = client.simulate_post(f"/{model}", json=body)
                assert answer.status_code == 200, answer.text
                return part, predictions(answer)

            before = _stacked_calls(client)
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(post, range(0, 120, 4)))
            for part, got in results:
                assert got.tolist() == fitted.predict(part).tolist()
            calls, answered = (a - b for a, b in zip(_stacked_calls(client), before, strict=True))
            assert answered == 30 and calls < 30, (model, calls)  # some calls stacked


def test_floats_are_the_models_own_on_the_stacked_rows():
    """A stacked call's output is the model's own on those rows in one call, exactly; each
    request's part is then within a few ulps of that request predicted alone."""
    x, y = classification(rows=300)
    model = LogisticRegression().fit(x.to_numpy(), y)  # as the array path calls it
    values = x.to_numpy()
    parts = [Rows(values[i : i + 7], list(x.columns), conformed=True) for i in range(0, 70, 7)]
    stacked = stack(parts)
    output = model.predict_proba(stacked.array)
    for part, got in zip(parts, split(output, [p.shape[0] for p in parts]), strict=True):
        alone = model.predict_proba(part.array)
        np.testing.assert_allclose(got, alone, rtol=1e-13, atol=1e-16)
        assert (np.argmax(got, axis=1) == np.argmax(alone, axis=1)).all()


def test_a_wrapper_that_is_not_batchable_and_a_server_with_batching_off_run_requests_alone(
    store_url,
):
    x, y = classification()
    for model, options in (("whole", {}), ("slow-logistic", {"max_batch_rows": 0})):
        with in_process(models(), store_url, **options) as client:
            key, _ = train(client, model, x, y)
            body = {"model-key": key, "x": x.head(1).to_json(orient="split"), "orient": "split"}
            path = f"/{model}"
            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(client.simulate_post, path, json=body) for _ in range(4)]
                answers = [f.result() for f in futures]
            assert all(a.status_code == 200 for a in answers)
            text = client.simulate_get("/metrics").text
            assert "mlserver_batch_requests_count 0.0" in text


def test_a_delay_lets_more_requests_join_the_same_call():
    batches = Batches(max_rows=100, max_delay=0.5)
    calls = []
    first = threading.Event()

    def call(rows: Rows) -> np.ndarray:
        calls.append(rows.shape[0])
        first.set()
        time.sleep(0.02)
        return rows.array[:, 0]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batches.run, "k", _rows(np.zeros((1, 2))), call)]
        first.wait(5)
        futures.append(pool.submit(batches.run, "k", _rows(np.zeros((1, 2))), call))
        time.sleep(0.05)  # the first ended; the second leads and waits for more
        futures += [pool.submit(batches.run, "k", _rows(np.zeros((1, 2))), call) for _ in range(5)]
        assert all(len(f.result()) == 1 for f in futures)
    assert calls == [1, 6]


@pytest.mark.parametrize("kind", ["frame", "series", "sparse", "list"])
def test_outputs_of_every_kind_split_back_into_each_requests_rows(kind):
    from scipy import sparse

    values = np.arange(12.0).reshape(6, 2)
    output = {
        "frame": pd.DataFrame(values),
        "series": pd.Series(values[:, 0]),
        "sparse": sparse.coo_matrix(values),
        "list": values.tolist(),
    }[kind]
    parts = split(output, [1, 2, 3])
    dense = [p.toarray() if hasattr(p, "toarray") else np.asarray(p) for p in parts]
    assert [len(p) for p in dense] == [1, 2, 3]
    assert np.concatenate(dense).reshape(6, -1)[:, 0].tolist() == values[:, 0].tolist()
    assert split(output, [1, 2]) is None  # not one output row per input row


def test_frames_from_dataframe_wrappers_stack_too():
    first = Rows(pd.DataFrame({"colour": ["red"], "size": [1.0]}), conformed=True)
    second = Rows(pd.DataFrame({"colour": ["blue", "green"], "size": [2.0, 3.0]}), conformed=True)
    stacked = stack([first, second])
    assert stacked.framed and stacked.frame["colour"].tolist() == ["red", "blue", "green"]
    assert stacked.frame.index.tolist() == [0, 1, 2]
