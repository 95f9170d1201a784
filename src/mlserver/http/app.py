"""`create_app`: wires a registry, a store and settings into a Falcon WSGI app. Wiring only."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

import falcon

from mlserver.config import Settings
from mlserver.http import errors, ui, v2
from mlserver.http.auth import Authenticator, Tokens
from mlserver.http.history import (
    AliasesResource,
    AliasResource,
    VersionResource,
    VersionsResource,
)
from mlserver.http.imports import ArtifactResource, ImportResource
from mlserver.http.lineage import RefitResource, VersionDataResource
from mlserver.http.metrics import Metrics, MetricsResource, RequestObserver
from mlserver.http.openapi import OpenAPIDocument
from mlserver.http.resources import (
    HealthResource,
    ModelResource,
    ModelsResource,
    ReadyResource,
)
from mlserver.registry import Registry
from mlserver.service import Service
from mlserver.signing import Signer
from mlserver.store.base import Store

__all__ = ["App", "create_app"]


class App(falcon.App):
    """A Falcon WSGI app that also owns its Service, so a server can close it on shutdown."""

    service: Service
    #: This app's Prometheus metrics (`metrics.registry` is its own CollectorRegistry).
    metrics: Metrics

    #: Set by `start`; the one check a request pays for it.
    _serving = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start serving: the service's first sweep and heartbeat (idempotent). The first
        request calls it; a server calls it before it listens."""
        with self._starting:  # concurrent first requests: one starts, the others wait for it
            if self._serving:
                return
            self.service.start()
            self.metrics.count_store_errors_from_now()
            self._serving = True

    def __call__(self, env: dict[str, Any], start_response: Any) -> Any:
        if not self._serving:
            self.start()
        return super().__call__(env, start_response)

    def close(self, timeout: float | None = None) -> int:
        """Stop training: wait for running jobs (at most `timeout` seconds), then stop
        heartbeats; returns how many jobs were left to the lease rules (Service.close)."""
        return self.service.close(timeout)


def create_app(
    registry: Registry,
    store: Store,
    *,
    settings: Settings | None = None,
    executor: Executor | None = None,
    tokens: Tokens | Mapping[str, str | Iterable[str]] | None = None,
    signing_keys: Signer | Mapping[str, str | bytes] | None = None,
    **options: Any,
) -> App:
    """The WSGI app serving every model of `registry` from `store`; building it does no I/O
    (the store is first touched when the app starts serving, see `App.start`).

    `options` override single settings (`max_body_bytes=...`, `training_threads=...`,
    `model_cache_size=...`, `lease_seconds=...`); `executor` replaces the app's own thread pool.
    `tokens` (sha256 of a token -> its scopes; see `mlserver.http.auth.hash_token`) turns on
    bearer-token auth; without it every route is open. `signing_keys` (key id -> secret, the
    first signs) signs every stored model and refuses to load one whose signature fails. The
    dashboard is served at `/ui` unless `ui=False`.
    """
    settings = (settings or Settings()).replace(**options)
    # Checked before the service starts its threads: a bad value leaves nothing running.
    authenticator = None
    if tokens is not None:
        authenticator = Authenticator(tokens if isinstance(tokens, Tokens) else Tokens(tokens))
    signer = None
    if signing_keys is not None:
        signer = signing_keys if isinstance(signing_keys, Signer) else Signer(signing_keys)
    service = Service(registry, store, settings=settings, executor=executor, signer=signer)
    metrics = Metrics(service)
    # The observer comes first: it times, logs and counts every answer, refusals included.
    middleware: list[object] = [RequestObserver(metrics)]
    if authenticator is not None:
        middleware.append(authenticator)
    app = App(media_type=falcon.MEDIA_JSON, middleware=middleware)
    app.service = service
    app.metrics = metrics
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True  # `?model-key=` is a 400, not a listing
    app.resp_options.secure_cookies_by_default = True
    errors.install(app)
    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(service))
    app.add_route("/models", ModelsResource(service))
    app.add_route("/openapi.json", OpenAPIDocument(service, secured=authenticator is not None))
    app.add_route("/metrics", MetricsResource(metrics))
    app.add_route("/{model}", ModelResource(service))
    app.add_route("/{model}/{key}/versions", VersionsResource(service))
    app.add_route("/{model}/{key}/versions/{n}", VersionResource(service))
    app.add_route("/{model}/{key}/aliases", AliasesResource(service))
    app.add_route("/{model}/{key}/aliases/{alias}", AliasResource(service))
    app.add_route("/{model}/{key}/versions/{n}/data", VersionDataResource(service))
    app.add_route("/{model}/{key}/refit", RefitResource(service))
    app.add_route("/{model}/import", ImportResource(service))
    for template, resource, suffix in v2.routes(service):
        app.add_route(template, resource, suffix=suffix)
    app.add_route("/{model}/{key}/versions/{n}/artifact", ArtifactResource(service))
    if settings.ui:
        ui_tokens = authenticator.tokens if authenticator is not None else None
        for template, resource, suffix in ui.routes(service, metrics, ui_tokens):
            app.add_route(template, resource, suffix=suffix)
    return app
