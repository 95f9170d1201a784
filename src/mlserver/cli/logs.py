"""What `ml-server` writes: log records as key=value lines, and one-line messages for people."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import TextIO

__all__ = ["PROG", "SAY", "KeyValueFormatter", "configure_logging", "reader_gone", "say"]

PROG = "ml-server"
#: Prefix of every line the CLI writes for people (start-up, stop, errors).
SAY = "mlserver:"

# A message that already is key=value pairs (the library logs `event=... key=value`).
_PAIRS = re.compile(r"^[A-Za-z_][\w.-]*=")


class KeyValueFormatter(logging.Formatter):
    """One line per record: `ts=... level=... logger=... event=...`; other text is quoted."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not _PAIRS.match(message):
            message = "msg=" + json.dumps(message)
        line = (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S%z')} "
            f"level={record.levelname.lower()} logger={record.name} {message}"
        )
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


def configure_logging(level: str, stream: TextIO) -> None:
    """Send every record to `stream` as key=value lines, at `level` and above."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_mlserver_cli", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    handler._mlserver_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Warnings (e.g. a fit that did not converge) become log records in the same format.
    logging.captureWarnings(True)
    # NOTE: waitress warns "Task queue depth is N" for every request that waits for a free
    # thread: thousands of lines a second under load (we measured ~16,000 in 10 s at 8
    # connections), saying only that --threads is smaller than the load, which is normal.
    # They are kept at debug level, where sizing threads is what one is looking at.
    logging.getLogger("waitress.queue").setLevel(
        logging.NOTSET if level == "debug" else logging.ERROR
    )
    # NOTE: peewee logs every query with its parameters at debug level: model blobs included.
    logging.getLogger("peewee").setLevel(logging.INFO)


def say(stream: TextIO, message: str) -> None:
    """One line for people, flushed so a supervising process sees it at once."""
    try:
        stream.write(f"{SAY} {' '.join(message.split())}\n")
        stream.flush()
    except BrokenPipeError:
        reader_gone(stream)


def reader_gone(stream: TextIO) -> None:
    """Whoever read `stream` is gone (`| head`, a supervisor that closed the pipe): it now
    writes to the null device, so that nothing (Python's flush at exit included) raises
    again, and the server goes on."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, stream.fileno())
    os.close(null)
