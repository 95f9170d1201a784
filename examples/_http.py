"""Shared by the examples: a server thread, and one JSON request with the standard library."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore


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
        server.trigger.pull_trigger(close_in_loop)
        thread.join(timeout=5)
        server.trigger.close()  # only now: nothing can write to it any more
        app.close()

    def close_in_loop() -> None:
        # NOTE: runs in the server's thread; closing sockets from another thread races its
        # select() (EBADF). The trigger leaves the map but stays open until the loop has ended.
        for channel in list(server._map.values()):
            if channel is server:  # not server.close(): that closes the trigger too
                wasyncore.dispatcher.close(server)
            elif channel is not server.trigger:
                channel.handle_close()
        server.trigger.del_channel()

    return f"http://127.0.0.1:{server.effective_port}", stop
