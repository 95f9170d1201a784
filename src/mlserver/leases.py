"""Who holds a claim: a worker's identity, and whether that worker is certainly gone.

The identity names host, PID namespace and process, so a live process on the same host can
tell that a lease's holder died without waiting for the lease to run out.
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["is_dead", "worker_id"]


def worker_id() -> str:
    """host:pid-namespace:pid:nonce; enough to tell, on the same host, whether it is alive."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def is_dead(worker: str) -> bool:
    """True only when the worker is certainly gone: same host and PID namespace, no process."""
    host, _, rest = worker.partition(":")
    namespace, _, rest = rest.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
