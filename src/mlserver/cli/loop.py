"""waitress, run one turn at a time so a signal can stop it gracefully: listening, its own
refusals in the app's error shape, the signal handler, and the drain of in-flight requests."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from mlserver.cli.logs import SAY
from mlserver.errors import ConfigurationError
from mlserver.http.app import App

__all__ = ["Stopper", "drain", "listen", "listening", "loop", "stop_listening", "url"]


def listen(app: App, host: str, port: int, threads: int) -> dict[int, Any]:
    """waitress listening on host:port; returns its socket map, where the event loop runs."""
    socket_map: dict[int, Any] = {}
    try:
        # PERF: waitress spools bodies above 512 KiB to a temporary file; keep any body the
        # app accepts (max_body_bytes) in memory instead. And it reads 8 KiB per recv: a 2 MB
        # body took ~6.5 ms to arrive over loopback, ~2.3 ms at 256 KiB per recv.
        # NOTE: waitress receives a whole body before the app sees any of it; its own
        # limit refuses one whose Content-Length is above max_body_bytes before reading it,
        # and a chunked one as soon as that much has arrived. It refuses at the limit
        # itself: hence the 1.
        settings = app.service.settings
        limit = settings.max_body_bytes
        waitress.create_server(
            app,
            map=socket_map,
            host=host,
            port=port,
            threads=threads,
            inbuf_overflow=limit,
            max_request_body_size=limit + 1,
            recv_bytes=256 * 1024,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from exc
    except ValueError as exc:  # waitress' own checks of its adjustments
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from exc
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            # An import's artifact has a limit of its own (max_import_bytes), refused the
            # same way; above max_body_bytes it is spooled to a temporary file as it comes.
            imports = copy.copy(dispatcher.adj)
            imports.max_request_body_size = settings.max_import_bytes + 1
            dispatcher.channel_class = type("Channel", (_Channel,), {"import_adj": imports})
    return socket_map


def listening(socket_map: dict[int, Any]) -> list[BaseWSGIServer]:
    """The listening sockets of `socket_map` (one per address host:port resolves to)."""
    return [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]


class _ErrorAnswer(ErrorTask):
    """waitress' own refusals (413 above the body limit, 400 for a malformed request) in
    the app's error shape, `{"title", "description"}`; the connection closes after them."""

    def execute(self) -> None:
        error = self.request.error
        title, description = error.reason, str(error.body)
        if isinstance(error, RequestEntityTooLarge):
            limit = self.request.adj.max_request_body_size - 1
            imports = self.request.adj is not self.channel.adj
            setting = "max_import_bytes" if imports else "max_body_bytes"
            length = self.request.content_length
            size = f"of {length} bytes " if length > limit else ""
            title = "Payload too large"
            description = f"request body {size}is above the {limit}-byte limit ({setting})"
        body = json.dumps({"title": title, "description": description}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Parser(HTTPRequestParser):
    """waitress' request parser, with the body limit of imports for `PUT /{model}/import`."""

    def __init__(self, adj: Any, imports: Any) -> None:
        super().__init__(adj)
        self._imports = imports

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # NOTE: waitress checks the body limit right after this, from `self.adj`. Only
        # `/{model}/import` (not, say, an alias named "import") has the larger limit.
        if self.command == "PUT" and self.path.count("/") == 2 and self.path.endswith("/import"):
            self.adj = self._imports


class _Channel(HTTPChannel):
    """A waitress connection whose own refusals answer JSON, and whose imports may be
    larger than other bodies."""

    error_task_class = _ErrorAnswer
    #: waitress' adjustments with the body limit of imports (set per server by `listen`).
    import_adj: Any = None

    def parser_class(self, adj: Any) -> _Parser:
        return _Parser(adj, self.import_adj)


class Stopper:
    """The first SIGTERM/SIGINT asks for a graceful stop; a second one exits at once."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.signal: int | None = None
        self._wake = wake
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            # NOTE: os.write, not print: the handler may interrupt a write to the same stream.
            name = signal.Signals(signum).name
            os.write(2, f"{SAY} {name} again: exiting without waiting\n".encode())
            os._exit(1)
        self.signal = signum
        self._wake()  # the event loop is waiting in poll(); let it see the request now

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM and SIGINT inside the block (main thread only), then restore."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self)
        try:
            yield
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)


def url(listener: BaseWSGIServer) -> str:
    """Where `listener` answers, as a URL (IPv6 hosts in brackets)."""
    host = str(listener.effective_host)
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"http://{host}:{listener.effective_port}"


def loop(socket_map: dict, listener: BaseWSGIServer, timeout: float) -> None:
    """One turn of waitress' event loop (what `server.run()` repeats forever)."""
    wasyncore.loop(
        timeout=timeout, map=socket_map, use_poll=listener.adj.asyncore_use_poll, count=1
    )


def stop_listening(listeners: list[BaseWSGIServer]) -> None:
    """Refuse new connections at once (a load balancer retries them elsewhere)."""
    for listener in listeners:
        # NOTE: close only the listening socket; `listener.close()` would also close the
        # trigger the worker threads use to wake the loop, which still has answers to send.
        wasyncore.dispatcher.close(listener)


def drain(socket_map: dict, listeners: list[BaseWSGIServer], grace: float) -> None:
    """Let in-flight requests finish and their answers go out, then close every connection."""
    first = listeners[0]
    deadline = time.monotonic() + grace
    drained = threading.Event()

    def shutdown() -> None:
        # Each thread ends after its current request; requests still queued are cancelled.
        first.task_dispatcher.shutdown(cancel_pending=True, timeout=grace)
        drained.set()

    threading.Thread(target=shutdown, name="mlserver-drain", daemon=True).start()
    while not drained.is_set():
        loop(socket_map, first, 0.05)
    # Answers bigger than the socket buffer are sent by the loop, not the worker thread.
    flush_until = max(deadline, time.monotonic() + 1.0)
    while time.monotonic() < flush_until and any(d.writable() for d in list(socket_map.values())):
        loop(socket_map, first, 0.05)
    for listener in listeners:
        listener.close()
    wasyncore.close_all(socket_map)
