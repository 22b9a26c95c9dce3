"""Issue 10, item 10: the loopback ``edge-runtime serve`` endpoint against crafted requests sent
with raw sockets and http.client: bounded reads whatever Content-Length says, JSON content type
only, loopback Host names only (DNS rebinding), and no browser origin unless configured."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from edge_toy_artifact import GOLDEN_RECORDS

from edge_runtime import Runtime
from edge_runtime._http import MAX_BODY_BYTES, make_server

SECRET = "serve-deployment-secret-0123456789"
RECORD = json.dumps(GOLDEN_RECORDS[0]).encode()


@pytest.fixture
def serve(toy_artifact, toy_public_key, tmp_path) -> Iterator[Any]:
    started = []

    def start(**kwargs: Any) -> tuple[int, Runtime]:
        runtime = Runtime(toy_artifact, outbox_path=tmp_path / "o.db", device_id="till-serve", secret=SECRET,
                          public_key=toy_public_key)  # fmt: skip
        server = make_server(runtime, "127.0.0.1", 0, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, runtime))
        return server.server_address[1], runtime

    yield start
    for server, runtime in started:
        server.shutdown()
        server.server_close()
        runtime.close()


def raw(port: int, head: str, body: bytes = b"", *, close_write: bool = False) -> tuple[int, dict[str, Any]]:
    """Send exactly these bytes; return (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in header.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(header.split(b" ")[1]), json.loads(rest[:length])


def stored(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "o.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])


@pytest.mark.parametrize(
    ("length_header", "status", "detail"),
    [
        ("Content-Length: -1\n", 400, "Content-Length must be one non-negative integer, got '-1'"),
        ("Content-Length: abc\n", 400, "Content-Length must be one non-negative integer, got 'abc'"),
        ("Content-Length: 1e3\n", 400, "Content-Length must be one non-negative integer, got '1e3'"),
        ("Content-Length: 10\nContent-Length: 20\n", 400, "Content-Length must be one non-negative integer"),
        ("", 411, "Content-Length is required"),
        ("Transfer-Encoding: chunked\n", 411, "Transfer-Encoding is not accepted"),
        (f"Content-Length: {MAX_BODY_BYTES + 1}\n", 413, f"body over {MAX_BODY_BYTES} bytes"),
    ],
    ids=["negative", "text", "float", "twice", "missing", "chunked", "over-cap"],
)
def test_content_length_cannot_make_the_read_unbounded(serve, tmp_path, length_header, status, detail) -> None:
    port, _ = serve()
    head = f"POST /classify HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n{length_header}"
    # Headers only, the connection left open: a server that trusted "-1" would wait for the
    # end of a body that never comes (read until EOF); it must answer at once and store nothing.
    answer = raw(port, head)
    assert answer[0] == status and answer[1]["detail"].startswith(detail)
    assert stored(tmp_path) == 0


def test_a_body_shorter_than_its_length_is_refused_after_the_timeout_bound(serve, tmp_path) -> None:
    port, _ = serve()
    head = f"POST /classify HTTP/1.1\nHost: localhost:{port}\nContent-Type: application/json\nContent-Length: 100\n"
    assert raw(port, head, b'{"Age": 3', close_write=True) == (400, {"detail": "body ended after 9 of 100 bytes"})


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_only_json_is_accepted(serve, tmp_path, content_type) -> None:
    port, _ = serve()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if content_type is None else {"Content-Type": content_type}
    conn.request("POST", "/classify", body=RECORD, headers=headers)
    answer = conn.getresponse()
    assert answer.status == 415
    assert json.loads(answer.read())["detail"].startswith("Content-Type must be application/json")
    assert stored(tmp_path) == 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/classify", body=RECORD, headers={"Content-Type": "application/json; charset=utf-8"})
    assert conn.getresponse().status == 200 and stored(tmp_path) == 1


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "192.168.1.5", ""])
def test_dns_rebinding_cannot_read_status_or_classify(serve, tmp_path, host) -> None:
    port, _ = serve()
    for method, path, body in (("GET", "/status", b""), ("GET", "/health", b""), ("POST", "/classify", RECORD)):
        head = f"{method} {path} HTTP/1.1\nHost: {host}\nContent-Type: application/json\nContent-Length: {len(body)}\n"
        status, answer = raw(port, head)  # the body is never read: it is not sent
        assert status == 421 and answer["detail"].startswith("the Host header must be localhost")
    assert raw(port, "GET /status HTTP/1.1\nContent-Length: 0\n")[0] == 421  # no Host at all
    assert stored(tmp_path) == 0
    for good in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "LOCALHOST"):
        assert raw(port, f"GET /health HTTP/1.1\nHost: {good}\n")[0] == 200


def test_browser_origins_are_refused_unless_configured(serve, tmp_path) -> None:
    port, _ = serve()
    head = (f"POST /classify HTTP/1.1\nHost: 127.0.0.1:{port}\nOrigin: https://evil.example\n"
            f"Content-Type: application/json\nContent-Length: {len(RECORD)}\n")  # fmt: skip
    assert raw(port, head) == (
        403,
        {"detail": "requests from web origin 'https://evil.example' are not accepted"},
    )
    assert raw(port, "GET /status HTTP/1.1\nHost: localhost\nOrigin: null\n")[0] == 403
    assert stored(tmp_path) == 0

    port, _ = serve(allowed_origins=["http://pos.local:3000/"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("OPTIONS", "/classify", headers={"Origin": "http://pos.local:3000"})
    preflight = conn.getresponse()
    preflight.read()
    assert preflight.status == 204 and preflight.getheader("Access-Control-Allow-Origin") == "http://pos.local:3000"
    conn.request("POST", "/classify", body=RECORD,
                 headers={"Origin": "http://pos.local:3000", "Content-Type": "application/json"})  # fmt: skip
    answer = conn.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["seq"] == 1
    assert answer.getheader("Access-Control-Allow-Origin") == "http://pos.local:3000"
