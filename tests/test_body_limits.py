"""Hostile bodies through a real socket: decompression bombs are refused from their metadata
with bounded memory, and bodies above max_body_bytes before they are sent."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from mlserver.http.auth import hash_token
from support import ServerProcess, regression

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.slow

LIMIT = 1_000_000  # --max-body-bytes of the body-limit servers
SERVERS = {"waitress": (), "gunicorn": ("--workers", "2")}
ARROW, PARQUET, CSV, JSON = (
    "application/vnd.apache.arrow.stream",
    "application/vnd.apache.parquet",
    "text/csv",
    "application/json",
)


def arrow_zeros(rows: int, codec: str) -> bytes:
    """One record batch of `rows` zeros, compressed: a few KB that decode to rows x 8 bytes."""
    schema = pa.schema([("a", pa.float64())])
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_batch(pa.record_batch([pa.array(np.zeros(rows))], schema=schema))
    return sink.getvalue().to_pybytes()


def arrow_nulls(rows: int) -> bytes:
    """A column of type null: no buffers at all, whatever its length."""
    schema = pa.schema([("n", pa.null())])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch([pa.nulls(rows)], schema=schema))
    return sink.getvalue().to_pybytes()


def parquet_zeros(rows: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": np.zeros(rows)}), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rsplit(":", 1)
    return host, int(port)


def read_answer(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP answer on `sock`."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in headers.items()}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(url: str, head: str, body: bytes = b"") -> tuple[int, dict, bytes, float]:
    """Send `head` and `body` on a fresh connection; the answer and the seconds it took."""
    with socket.create_connection(address(url)) as sock:
        start = time.monotonic()
        sock.sendall(head.encode("latin-1") + body)
        status, headers, answer = read_answer(sock)
        return status, headers, answer, time.monotonic() - start


def request_head(method: str, path: str, media: str, length: int | None, token: str = "") -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Type: {media}"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n\r\n"


def warm(url: str) -> None:
    """Answers from every worker of a server (gunicorn's load their app after start-up)."""
    for _ in range(6):
        status, *_ = exchange(url, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert status == 200


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[str, bytes, str]]:
    """Small bodies that declare far more than the server takes: media, body, limit named."""
    wide = ",".join(f"c{i}" for i in range(1_000_000)).encode() + b"\n"
    return {
        "arrow zstd, 30M rows": (ARROW, arrow_zeros(30_000_000, "zstd"), "max_rows"),
        "arrow lz4, 30M rows": (ARROW, arrow_zeros(30_000_000, "lz4"), "max_rows"),
        "arrow null type, 100M rows": (ARROW, arrow_nulls(100_000_000), "max_rows"),
        "parquet, 30M rows": (PARQUET, parquet_zeros(30_000_000), "max_rows"),
        "csv, 1M columns": (CSV, wide + b"0" + b",0" * 999_999 + b"\n", "max_columns"),
        "csv, 5M rows": (CSV, b"a,b\n" + b"0,1\n" * 5_000_000, "max_rows"),
    }  # fmt: skip


def test_bomb_bodies_are_refused_from_their_metadata_with_bounded_memory(tmp_path, bombs):
    """Compressed Arrow and Parquet bodies declaring tens of millions of rows, and CSV bodies
    with a million columns or millions of rows, are a quick 422 naming the limit, and the
    server's peak memory grows by less than 100 MB over all of them."""
    server = ServerProcess(f"sqlite:///{tmp_path}/bombs.db")
    try:
        # Small bodies of each format first: imports and first-use allocations are done.
        x, _ = regression(rows=5)
        for media, body in (
            (ARROW, arrow_zeros(5, "zstd")),
            (PARQUET, parquet_zeros(5)),
            (CSV, x.to_csv(index=False).encode()),
        ):
            head = request_head("POST", "/linreg?model-key=nope", media, len(body))
            assert exchange(server.url, head, body)[0] == 404
        before = peak_rss_mb(server.process.pid)
        for name, (media, body, limit) in bombs.items():
            head = request_head("PUT", "/linreg?target=a", media, len(body))
            status, _, answer, seconds = exchange(server.url, head, body)
            assert status == 422, (name, answer)
            assert f"({limit})" in json.loads(answer)["description"], name
            assert seconds < 5, (name, seconds)
        growth = peak_rss_mb(server.process.pid) - before
        assert growth < 100, f"peak memory grew by {growth:.0f} MB"
        listing = exchange(server.url, "GET /linreg HTTP/1.1\r\nHost: test\r\n\r\n")
        assert json.loads(listing[2])["keys"] == []
    finally:
        server.stop()


@pytest.fixture(params=sorted(SERVERS))
def limited(request, tmp_path):
    """A server (waitress, or gunicorn with two workers) taking bodies of at most LIMIT bytes."""
    token = "bodies-token"
    server = ServerProcess(
        f"sqlite:///{tmp_path}/limits.db",
        "--max-body-bytes",
        str(LIMIT),
        "--tokens",
        f"{hash_token(token)} train,predict,admin",
        *SERVERS[request.param],
    )
    warm(server.url)
    server.token = token
    server.kind = request.param
    yield server
    server.stop()


def test_declared_oversized_body_is_refused_before_it_is_sent(limited):
    """A Content-Length above max_body_bytes gets its 413, in the app's JSON error shape and
    naming the limit, after only the headers and 1 KB of a 1 GB body were sent."""
    head = request_head("PUT", "/linreg", JSON, 10**9, limited.token)
    status, headers, answer, seconds = exchange(limited.url, head, b" " * 1024)
    assert status == 413
    assert headers["content-type"].startswith(JSON)
    assert json.loads(answer) == {
        "title": "Payload too large",
        "description": f"request body of 1000000000 bytes is above the {LIMIT}-byte limit "
        "(max_body_bytes)",
    }
    assert seconds < 2


def test_chunked_upload_over_the_limit_is_refused_while_it_is_sent(limited):
    """A chunked body is refused with 413 once more than max_body_bytes arrived: the answer
    comes while the client is still sending, long before 64 MB are out."""
    head = request_head("PUT", "/linreg", JSON, None, limited.token)
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent = 0
    with socket.create_connection(address(limited.url)) as sock:
        sock.sendall(head.encode())
        while sent < 64 * LIMIT:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 0x10000
        status, _, answer, *_ = read_answer(sock)
    assert status == 413
    assert f"above the {LIMIT}-byte limit (max_body_bytes)" in json.loads(answer)["description"]
    assert sent < 16 * LIMIT


def test_a_body_at_the_limit_is_read_and_one_byte_more_is_not(limited):
    """max_body_bytes is the largest body taken: one of exactly that size reaches the app
    (here a 400 for its missing x), one a byte larger is a 413."""
    for size, expected in ((LIMIT, 400), (LIMIT + 1, 413)):
        body = b"{}" + b" " * (size - 2)
        head = request_head("PUT", "/linreg", JSON, size, limited.token)
        status, _, answer, _ = exchange(limited.url, head, body)
        assert status == expected, (size, answer)


def test_chunked_json_body_is_read(limited):
    """A PUT whose JSON body comes chunked trains as with a Content-Length (gunicorn handed
    the app a chunked body that was read as empty)."""
    x, y = regression()
    body = json.dumps({"x": x.to_json(orient="split"), "y": y.to_json(orient="split")})
    data = body.encode()
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(data[i : i + 500]), data[i : i + 500])
        for i in range(0, len(data), 500)
    )
    head = request_head("PUT", "/linreg?orient=split", JSON, None, limited.token)
    status, _, answer, _ = exchange(limited.url, head, chunked + b"0\r\n\r\n")
    assert status == 202, answer


def test_without_a_token_a_body_is_refused_before_it_is_read(limited):
    """Without a token, a body is refused while only its headers were sent: above the limit
    waitress answers 413 itself; gunicorn runs the app at once, whose token check (401)
    comes before any read of the body, whatever its size."""
    big = request_head("PUT", "/linreg", JSON, 10**9)
    status, headers, _, seconds = exchange(limited.url, big)
    assert status == (413 if limited.kind == "waitress" else 401) and seconds < 2
    if limited.kind == "gunicorn":
        # NOTE: waitress receives every body below the limit before the app runs.
        small = request_head("PUT", "/linreg", JSON, LIMIT // 2)
        status, headers, _, seconds = exchange(limited.url, small)
        assert status == 401 and seconds < 2
        assert headers["www-authenticate"].startswith("Bearer")
