"""The head office client's urllib transport against a scripted loopback server (standard
library): gzip bodies, bearer token, Retry-After in seconds and as a date, truncated replies,
refusals, and a drift report that is never gzipped (central reads gzip on the batch route only)."""

from __future__ import annotations

import email.utils
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edge_runtime.client import HeadOfficeClient, RetryPolicy, parse_retry_after
from edge_runtime.exceptions import SyncError
from edge_runtime.sync import SyncClient


class FakeOutbox:
    """The outbox interface the client relies on, in memory."""

    def __init__(self, n: int) -> None:
        self.rows = {
            s: {"seq": s, "customer_ref": f"c{s}", "segment": "high",
                "probabilities": {"high": 1.0}, "model_version": "m/1",
                "classified_at": "2026-11-26T12:00:00.000Z"}
            for s in range(1, n + 1)
        }  # fmt: skip
        self.synced: set[int] = set()
        self.epoch = "e" * 32
        self.sent = 0
        self.alert: str | None = None

    def pending(self, limit: int) -> list[dict]:
        return [self.rows[s] for s in sorted(set(self.rows) - self.synced)][:limit]

    def mark_synced(self, seqs) -> int:  # type: ignore[no-untyped-def]
        new = set(seqs) - self.synced
        self.synced |= new
        return len(new)

    def backlog(self) -> int:
        return len(self.rows) - len(self.synced)

    def record_sent(self, seq: int) -> None:
        self.sent = max(self.sent, seq)

    def sent_through(self) -> int:
        return self.sent

    def sync_alert(self) -> str | None:
        return self.alert

    def set_sync_alert(self, message: str | None) -> None:
        self.alert = message

    def prune(self) -> int:
        return 0

    def events(self, *, unreported_only: bool = False) -> list[dict]:
        return []

    def mark_events_reported(self, ids) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def scripted():  # type: ignore[no-untyped-def]
    script: list[tuple[int, dict[str, str], bytes, bool]] = []
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            seen.append({"auth": self.headers["Authorization"], "body": json.loads(raw),
                         "gzip": self.headers.get("Content-Encoding") == "gzip"})  # fmt: skip
            status, headers, body, truncate = script.pop(0)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + (10 if truncate else 0)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script, seen
    server.shutdown()
    server.server_close()


def _client(url: str, sleeps: list[float], max_retries: int = 8) -> SyncClient:
    office = HeadOfficeClient(url, device_id="d-1", token="tok-1", timeout=5, gzip_min_bytes=0,
                              retry=RetryPolicy(backoff_base=0.1, max_retries=max_retries),
                              sleep=sleeps.append, random_state=0, allow_http=True)  # fmt: skip
    return SyncClient(office)


def test_transient_answers_are_retried_as_central_asks(scripted) -> None:
    url, script, seen = scripted
    in_five_s = email.utils.formatdate(time.time() + 5, usegmt=True)
    ack = json.dumps({"acked_through": 3, "stored": 3, "duplicates": 0}).encode()
    script += [
        (503, {"Retry-After": "3"}, b'{"detail": "restarting"}', False),
        (429, {"Retry-After": in_five_s}, b'{"detail": "slow down"}', False),
        (200, {}, ack[:10], True),  # the reply is cut short: stored or not, send again
        (500, {}, b'{"detail": "boom"}', False),
        (200, {}, ack, False),
    ]
    outbox, sleeps = FakeOutbox(3), []
    report = _client(url, sleeps).sync_once(outbox)
    assert (report.retries, report.marked, outbox.synced) == (4, 3, {1, 2, 3})
    assert sleeps[0] == 3.0 and 3.0 <= sleeps[1] <= 5.0 and all(s <= 0.8 for s in sleeps[2:])
    assert len(seen) == 5
    body = {"device_id": "d-1", "epoch": "e" * 32, "results": list(outbox.rows.values()), "backlog": 0}
    assert all(s == {"auth": "Bearer tok-1", "gzip": True, "body": body} for s in seen)
    assert [e.split(": ", 1)[1] for e in report.errors] == [
        "HTTP 503: restarting", "HTTP 429: slow down",
        "IncompleteRead: IncompleteRead(10 bytes read, 10 more expected)", "HTTP 500: boom",
    ]  # fmt: skip


def test_a_refusal_is_final_and_marks_nothing(scripted) -> None:
    url, script, seen = scripted
    script.append((401, {}, b'{"detail": "invalid device token"}', False))
    outbox, sleeps = FakeOutbox(2), []
    with pytest.raises(SyncError) as info:
        _client(url, sleeps).sync_once(outbox)
    assert str(info.value) == f"POST {url}/v1/results:batch: HTTP 401: invalid device token"
    assert (sleeps, outbox.synced, len(seen)) == ([], set(), 1)
    assert (info.value.status, info.value.report.marked) == (401, 0)  # type: ignore[union-attr]


def test_drift_report_is_plain_json(scripted) -> None:
    url, script, seen = scripted
    answer = {"device_id": "d-1", "model_version": "m/1", "rows": 3, "psi": {"age": 0.5},
              "flagged": ["age"], "threshold": 0.2}  # fmt: skip
    script.append((201, {}, json.dumps(answer).encode(), False))
    snapshot = {"model_version": "m/1", "rows": 3, "inputs": {"age": {"type": "number", "counts": [1, 2, 0]}}}
    assert _client(url, []).report_drift(snapshot) == answer
    assert seen == [{"auth": "Bearer tok-1", "gzip": False, "body": {
        "device_id": "d-1", "model_version": "m/1", "histograms": {"age": [1, 2, 0]}}}]  # fmt: skip


def test_connection_refused_is_retryable_then_gives_up() -> None:
    sleeps: list[float] = []
    client = _client("http://127.0.0.1:9", sleeps, max_retries=2)
    with pytest.raises(SyncError, match=r"^central unreachable after 3 attempts: POST "):
        client.sync_once(FakeOutbox(1))
    assert len(sleeps) == 2


def test_retry_after_parsing() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after("") is None
