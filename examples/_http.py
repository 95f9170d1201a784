"""Shared by the examples: one JSON request with the standard library, and a server thread."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import waitress


def call(method: str, url: str, body: dict | None = None, **query: Any) -> dict:
    """One JSON request; urllib keeps the examples free of extra dependencies."""
    if query:
        url = f"{url}?{urllib.parse.urlencode(query)}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_finished(url: str, key: str) -> dict:
    """Poll GET until the key's newest version is no longer RUNNING."""
    while (status := call("GET", url, **{"model-key": key}))["status"] == "RUNNING":
        time.sleep(0.05)
    if status["status"] != "FINISHED":
        raise SystemExit(f"training failed: {status['error']}")
    return status


def serve_in_background(app: Any) -> tuple[str, Callable[[], None]]:
    """Start waitress on a free local port; returns the base URL and a function to stop it."""
    server = waitress.create_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        # Let request threads finish their answers before the sockets go away.
        server.task_dispatcher.shutdown(timeout=5)
        server.close()
        app.close()

    return f"http://127.0.0.1:{server.effective_port}", stop
