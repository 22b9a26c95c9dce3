"""Issue 10 at central: every request body is bounded before authentication and parsing
(item 1), and unreadable bodies are a 4xx naming the problem, never a 500 (item 9)."""

from __future__ import annotations

import asyncio
import gzip
import json
import select
import socket
from typing import Any

import pytest
from central_helpers import ADMIN, bearer, make_result, sqlite_central, upload_body

MiB = 1024 * 1024
# Every route that takes a body; none may read more than its limit, with or without a token.
BODY_ROUTES = [
    "/v1/outcomes",
    "/v1/drift",
    "/v1/models",
    "/v1/rollouts",
    "/v1/rollbacks",
    "/v1/devices",
    "/v1/devices/d-x/model-report",
    "/v1/devices/d-x/events",
    "/v1/results:batch",
]


def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, dict, int]:  # type: ignore[type-arg]
    """Run one POST through the ASGI app; the body is ``chunks`` chunks of 64 KiB, pulled lazily.

    Returns (status, JSON answer, bytes the app pulled from the client).
    """
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks * 64 * 1024:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 64 * 1024
        return {"type": "http.request", "body": b"[" * 64 * 1024, "more_body": pulled < chunks * 64 * 1024}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


@pytest.fixture
def app(settings):  # type: ignore[no-untyped-def]
    from central.main import create_app

    return create_app(settings)  # no lifespan: a refused body must not need the database


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_declared_64_mib_body_without_a_token_is_refused_unread(app, path) -> None:
    status, answer, pulled = _call(app, path, [(b"content-length", str(64 * MiB).encode())], chunks=1024)
    limit, setting = (
        (16 * MiB * 4 // 3 + 64 * 1024, "EDGESEG_MAX_ARTIFACT_BYTES, base64")
        if path == "/v1/models"
        else (256 * 1024, "EDGESEG_MAX_BODY_BYTES")
    )
    assert (status, answer) == (413, {"detail": f"request body exceeds {limit} bytes ({setting})"})
    assert pulled == 0


@pytest.mark.parametrize("path", ["/v1/outcomes", "/v1/devices", "/v1/drift", "/v1/rollbacks"])
def test_a_chunked_body_is_cut_at_the_limit(app, path) -> None:
    status, answer, pulled = _call(app, path, [(b"transfer-encoding", b"chunked")], chunks=1024)
    assert (status, answer) == (413, {"detail": "request body exceeds 262144 bytes (EDGESEG_MAX_BODY_BYTES)"})
    assert pulled <= 256 * 1024 + 64 * 1024  # at most one chunk past the limit, never 64 MiB


def test_the_batch_route_checks_the_token_before_reading_a_chunked_body(api) -> None:
    status, answer, pulled = _call(api.client.app, "/v1/results:batch", [(b"transfer-encoding", b"chunked")], 1024)
    assert (status, answer) == (401, {"detail": "missing bearer token: send 'Authorization: Bearer <token>'"})
    assert pulled == 0


@pytest.mark.parametrize("value", ["-1", "12abc", "1e9"])
def test_a_content_length_that_is_not_a_count_is_a_400(app, value) -> None:
    status, answer, pulled = _call(app, "/v1/outcomes", [(b"content-length", value.encode())], chunks=1)
    assert (status, answer) == (400, {"detail": f"Content-Length {value!r} is not a non-negative integer"})
    assert pulled == 0


def test_uploads_may_be_larger_than_other_bodies(api, test_artifact) -> None:
    """POST /v1/models has its own limit: an artifact with a 300 KiB card passes the 256 KiB one."""
    import base64

    body = upload_body(test_artifact)
    body["files"]["card.md"] = base64.b64encode(b"# card\n" + b"x" * 300 * 1024).decode()
    response = api.client.post("/v1/models", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    too_big = api.client.post("/v1/outcomes", content=b" " * (256 * 1024 + 1), headers=ADMIN)
    assert (too_big.status_code, too_big.json()) == (
        413,
        {"detail": "request body exceeds 262144 bytes (EDGESEG_MAX_BODY_BYTES)"},
    )


def test_a_real_server_answers_413_before_the_body_is_sent(tmp_path, central_signing_key) -> None:
    """Over TCP: central answers a 64 MiB Content-Length without waiting for a byte of it, and
    cuts a chunked upload after about its limit (the client sent far less than 64 MiB)."""
    central = sqlite_central(tmp_path, central_signing_key[1])
    central.start()
    try:
        with socket.create_connection(("127.0.0.1", central.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/outcomes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {64 * MiB}\r\n\r\n".encode()
            )
            status_line = sock.recv(65536).split(b"\r\n", 1)[0]
        assert status_line.split(b" ")[:2] == [b"HTTP/1.1", b"413"]

        sent = 0
        with socket.create_connection(("127.0.0.1", central.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/drift HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"10000\r\n" + b"[" * 0x10000 + b"\r\n"
            answer = b""
            try:
                while sent < 64 * MiB:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        answer = sock.recv(65536)
                        break
                    sock.sendall(chunk)
                    sent += 0x10000
            except (BrokenPipeError, ConnectionResetError):
                pass
            if not answer:
                sock.settimeout(5)
                try:
                    answer = sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    answer = b""
        assert answer.split(b"\r\n", 1)[0].split(b" ")[:2] == [b"HTTP/1.1", b"413"]
        assert sent < 16 * MiB  # the limit is 4 MiB; socket buffers hold a few more
    finally:
        central.kill()


# ----------------------------------------------------------------------------- item 9
@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def _gzip_post(api, device, data: bytes):  # type: ignore[no-untyped-def]
    headers = {**bearer(device["token"]), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    return api.client.post("/v1/results:batch", content=data, headers=headers)


def test_gzip_with_a_second_member_or_trailing_garbage_is_refused(api, device) -> None:
    first = gzip.compress(json.dumps({"device_id": device["id"], "results": [make_result(1)]}).encode())
    second = gzip.compress(json.dumps({"device_id": device["id"], "results": [make_result(2)]}).encode())
    for data, extra in ((first + second, len(second)), (first + b"garbage", 7)):
        response = _gzip_post(api, device, data)
        assert (response.status_code, response.json()) == (
            400,
            {
                "detail": f"request body is not valid gzip: {extra} bytes after the end of the gzip member "
                "(send exactly one member)"
            },
        )
    assert api.count_results() == 0
    assert _gzip_post(api, device, first).status_code == 200


def test_deeply_nested_json_is_a_400_not_a_500(api, device) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    small = api.client.post(
        "/v1/results:batch", content=nested, headers={**bearer(device["token"]), "Content-Type": "application/json"}
    )
    assert (small.status_code, small.json()) == (400, {"detail": "request body is not valid JSON: nested too deeply"})
    drift = api.client.post(
        "/v1/drift", content=nested, headers={**bearer(device["token"]), "Content-Type": "application/json"}
    )
    assert (drift.status_code, drift.json()) == (400, {"detail": "There was an error parsing the body"})
    outcomes = api.client.post("/v1/outcomes", content=nested, headers={**ADMIN, "Content-Type": "application/json"})
    assert outcomes.status_code == 400
