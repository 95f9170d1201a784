"""`create_app`: wires a registry, a store and settings into a Falcon WSGI app. Wiring only."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import falcon

from mlserver.config import Settings
from mlserver.http import errors
from mlserver.http.resources import (
    HealthResource,
    ModelResource,
    ModelsResource,
    OpenAPIResource,
    ReadyResource,
)
from mlserver.registry import Registry
from mlserver.service import Service
from mlserver.store.base import Store

__all__ = ["App", "create_app"]


class App(falcon.App):
    """A Falcon WSGI app that also owns its Service, so a server can close it on shutdown."""

    service: Service

    def close(self) -> None:
        """Stop heartbeats and wait for this app's own training jobs to end."""
        self.service.close()


def create_app(
    registry: Registry,
    store: Store,
    *,
    settings: Settings | None = None,
    executor: Executor | None = None,
    **options: Any,
) -> App:
    """The WSGI app serving every model of `registry` from `store`.

    `options` override single settings (`max_body_bytes=...`, `training_threads=...`,
    `model_cache_size=...`, `lease_seconds=...`); `executor` replaces the app's own thread pool.
    """
    settings = (settings or Settings()).replace(**options)
    service = Service(registry, store, settings=settings, executor=executor)
    app = App(media_type=falcon.MEDIA_JSON)
    app.service = service
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True  # `?model-key=` is a 400, not a listing
    app.resp_options.secure_cookies_by_default = True
    errors.install(app)
    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(service))
    app.add_route("/models", ModelsResource(service))
    app.add_route("/openapi.json", OpenAPIResource(service))
    app.add_route("/{model}", ModelResource(service))
    return app
