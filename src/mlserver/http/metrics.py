"""Observability of one app: Prometheus metrics in a registry of its own, request ids and the
access log.

Several apps can live in one process, so nothing here is global: each app has its own
`CollectorRegistry`, served at `GET /metrics`. Counters the service keeps as plain numbers
(model cache hits and misses, store failures) are carried into Prometheus counters after every
request, after every job and at every scrape.

When prometheus_client runs in multi-process mode (PROMETHEUS_MULTIPROC_DIR set before the
process started, as under gunicorn with several workers), each process writes its metrics to
files in that directory and `/metrics` answers the sum over every process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from mlserver.batching import Batch
from mlserver.http.live import RecentRequests
from mlserver.jobs import JobOutcome
from mlserver.service import Service

__all__ = ["Metrics", "MetricsResource", "RequestObserver", "multiprocess_mode"]

access_log = logging.getLogger("mlserver.access")

#: An incoming X-Request-ID is used only if it is this tame (it goes into logs as is).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=-]{1,128}")
_PLAIN = re.compile(r"[A-Za-z0-9._:/{}@~+-]+")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TRAINING_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, float("inf"))
_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, float("inf"))


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps metric values in PROMETHEUS_MULTIPROC_DIR files.

    NOTE: prometheus_client decides this once, when it is first imported.
    """
    return values.ValueClass is not values.MutexValue


class Metrics:
    """The Prometheus metrics of one app's service, in a registry of its own."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_mode()
        registry = self.registry
        self.requests = Counter(
            "mlserver_http_requests",
            "HTTP requests answered, by route template, model, method and status code.",
            ["route", "model", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlserver_http_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by route template, model, method.",
            ["route", "model", "method"],
            registry=registry,
        )
        self.jobs = Counter(
            "mlserver_jobs",
            "Training jobs recorded, by model, kind (fit, update) and outcome "
            "(finished, failed, discarded).",
            ["model", "kind", "outcome"],
            registry=registry,
        )
        self.training = Histogram(
            "mlserver_training_seconds",
            "Seconds finished jobs spent fitting or updating, by model and kind.",
            ["model", "kind"],
            buckets=_TRAINING_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "mlserver_jobs_running",
            "Training jobs submitted and not yet recorded.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_hits = Counter(
            "mlserver_model_cache_hits",
            "Predictions that found their model version already deserialized.",
            registry=registry,
        )
        self.cache_misses = Counter(
            "mlserver_model_cache_misses",
            "Model versions loaded (and deserialized) for predictions.",
            registry=registry,
        )
        self.store_errors = Counter(
            "mlserver_store_errors",
            "Store operations that failed (database errors, blobs failing their sha256), "
            "by operation.",
            ["operation"],
            registry=registry,
        )
        self.batch_requests = Histogram(
            "mlserver_batch_requests",
            "Predict requests each model call answered (more than 1: stacked while the "
            "model was busy).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "mlserver_batch_rows",
            "Rows of x each model call of a predict took.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "mlserver_batch_wait_seconds",
            "Seconds a model call's longest-waiting request queued for it (0 when alone).",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        #: The last minutes per model, for the dashboard (this process's requests only).
        self.recent = RecentRequests()
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._synced = 0.0  # time.monotonic() of the last full sync on a request
        # NOTE: a store may be shared with other apps; count its failures from now on.
        self._seen: dict[tuple[str, str], int] = {
            ("store", operation): count for operation, count in service.store.error_counts().items()
        }
        service.jobs.observers.append(self.job)
        service.batches.observers.append(self.batch)

    def request(self, route: str, model: str, method: str, status: str, seconds: float) -> None:
        """Count one answered request."""
        key = (route, model, method, status)
        children = self._children.get(key)
        if children is None:  # PERF: labels() costs ~6 us a call; a request needs two
            children = (self.requests.labels(*key), self.latency.labels(*key[:3]))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if model:
            self.recent.record(model, int(status), seconds)
        # NOTE: a served prediction changes nothing but the cache counts; the rest (store
        # failures of background threads too) is carried over at least once a second.
        now = time.monotonic()
        if method == "POST" and status == "200" and now - self._synced < 1.0:
            self.sync(cache_only=True)
        else:
            self._synced = now
            self.sync()

    def count_store_errors_from_now(self) -> None:
        """Take the store's failure counts so far as the baseline again: the app calls it once
        its first sweep is done, so a sweep that failed at start counts as it did at build."""
        with self._lock:
            for operation, count in self.service.store.error_counts().items():
                self._seen[("store", operation)] = count

    def batch(self, batch: Batch) -> None:
        """Observe one model call of predicts (a `Batches` observer)."""
        self.batch_requests.observe(batch.requests)
        self.batch_rows.observe(batch.rows)
        self.batch_wait.observe(batch.waited)

    def job(self, outcome: JobOutcome) -> None:
        """Count one recorded job (a `Jobs` observer)."""
        self.jobs.labels(outcome.model, outcome.kind, outcome.outcome).inc()
        if outcome.training_seconds is not None:
            self.training.labels(outcome.model, outcome.kind).observe(outcome.training_seconds)
        self.sync()

    def sync(self, cache_only: bool = False) -> None:
        """Carry the service's own counts (cache, store failures, running jobs) over."""
        service = self.service
        with self._lock:
            self._advance(self.cache_hits, ("cache", "hits"), service.cache.hits)
            self._advance(self.cache_misses, ("cache", "misses"), service.cache.misses)
            if cache_only:
                return
            for operation, count in service.store.error_counts().items():
                counter = self.store_errors.labels(operation)
                self._advance(counter, ("store", operation), count)
            self.running.set(service.jobs.running)

    def _advance(self, counter: Any, name: tuple[str, str], now: int) -> None:
        delta = now - self._seen.get(name, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[name] = now

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format `accept` asks for (Prometheus text by default)."""
        self.sync()
        encode, content_type = choose_encoder(accept or "")
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return encode(merged), content_type
        return encode(self.registry), content_type


class MetricsResource:
    """`/metrics`: this app's metrics (every process's, in multi-process mode)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self.metrics.exposition(req.get_header("Accept"))


class RequestObserver:
    """Falcon middleware: a request id for each request (an incoming X-Request-ID, or a new
    one), echoed in the answer; one access-log line per request (INFO on `mlserver.access`);
    and the request counted in the app's metrics. It runs first, so it sees every answer,
    refusals by auth included."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.registry = metrics.service.registry

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _REQUEST_ID.fullmatch(given) else _new_id()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        req.context.model = params.get("model")

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        context = req.context
        seconds = time.perf_counter() - context.get("started", time.perf_counter())
        request_id = context.get("request_id") or _new_id()
        resp.set_header("X-Request-ID", request_id)
        route = req.uri_template or "unmatched"
        model = context.get("model")
        # NOTE: label values stay bounded: unknown model names and methods are not labels.
        model_label = model if model is not None and model in self.registry else ""
        method = req.method if req.method in _METHODS else "other"
        status = str(resp.status_code)
        self.metrics.request(route, model_label, method, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": method,
                "path": req.path,
                "route": route,
                "model": model,
                "status": status,
                "seconds": f"{seconds:.6f}",
                "token": context.get("token"),
                "error": context.get("error"),
            }
            access_log.info("event=request %s", _pairs(fields))


def _new_id() -> str:
    """32 random hex digits, as uuid4().hex looks. PERF: a tenth of uuid4's cost."""
    return os.urandom(16).hex()


def _pairs(fields: dict[str, Any]) -> str:
    """key=value pairs; values that are not plain tokens are JSON-quoted, so a client cannot
    forge fields or lines."""
    return " ".join(
        f"{name}={text if _PLAIN.fullmatch(text) else json.dumps(text)}"
        for name, value in fields.items()
        if value is not None
        for text in (str(value),)
    )
