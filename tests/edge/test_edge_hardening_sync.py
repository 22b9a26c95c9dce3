"""Issue 10, items 2 and 7 (device side): outbox epochs, acks the device refuses to believe, 409s,
and where the device token may go (central's own origin, no redirects, https unless allowed)."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from edge_update_stub import request_body

from edge_runtime.client import HeadOfficeClient, Request, Response, RetryPolicy, UrllibTransport
from edge_runtime.exceptions import SyncError
from edge_runtime.outbox import Outbox
from edge_runtime.sync import SyncClient

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def fill(outbox: Outbox, n: int) -> None:
    for i in range(n):
        outbox.append(segment="A", probabilities={"A": 0.75, "B": 0.25}, model_version="m/20261127T000000Z",
                      customer_ref=f"c{i}")  # fmt: skip


class Scripted:
    """A transport answering batches with ``answer(body) -> Response`` and keeping the bodies."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: Request) -> Response:
        body = request_body(request)
        self.bodies.append(body)
        return self.answer(body)


def client(transport: Any, **kwargs: Any) -> SyncClient:
    office = HeadOfficeClient("https://hq.example", device_id="d-1", token="tok", transport=transport,
                              retry=RetryPolicy(max_retries=3), sleep=lambda s: None, random_state=0)  # fmt: skip
    return SyncClient(office, **kwargs)


def ack_all(body: dict[str, Any], **extra: Any) -> Response:
    seqs = [r["seq"] for r in body["results"]]
    answer = {"acked_through": seqs[-1], "stored": len(seqs), "duplicates": 0, **extra}
    return Response(200, json.dumps(answer).encode())


def test_every_outbox_has_an_epoch_and_every_batch_carries_it(tmp_path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, device_id="d-1")
    epoch = box.epoch
    assert HEX32.match(epoch)
    fill(box, 3)
    box.close()
    box = Outbox(path, device_id="d-1")
    assert box.epoch == epoch and box.status()["epoch"] == epoch  # kept with the file
    transport = Scripted(lambda body: ack_all(body, epoch=epoch))
    report = client(transport).sync_once(box)
    assert (report.marked, transport.bodies[0]["epoch"], box.sent_through()) == (3, epoch, 3)
    box.close()
    # A recreated file (reinstall, disk swap, an operator deleting it) is a new epoch at seq 1.
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"o.db{suffix}").unlink(missing_ok=True)
    fresh = Outbox(path, device_id="d-1")
    fill(fresh, 1)
    assert fresh.epoch != epoch and HEX32.match(fresh.epoch) and fresh.last_seq() == 1
    fresh.close()


def test_an_outbox_from_before_epochs_keeps_the_legacy_epoch(tmp_path) -> None:
    """Central holds such a file's seqs under the legacy epoch "": resending them after the
    upgrade must be a duplicate there, and an ack for anything it holds is consistent."""
    path = tmp_path / "o.db"
    box = Outbox(path, device_id="d-1")
    fill(box, 5)
    box.close()
    with sqlite3.connect(path) as db:  # what a file written by the previous version looks like
        db.execute("DELETE FROM meta WHERE key IN ('epoch', 'sent_through')")
    box = Outbox(path, device_id="d-1")
    assert (box.epoch, box.sent_through()) == ("", 5)
    transport = Scripted(lambda body: Response(200, b'{"acked_through": 5, "stored": 0, "duplicates": 2}'))
    assert client(transport, batch_size=2).sync_once(box).marked == 5
    assert transport.bodies[0]["epoch"] == ""
    box.close()


def test_an_ack_above_what_was_ever_sent_marks_nothing_loudly(tmp_path, caplog) -> None:
    """The probe of issue 10: central acked through 1999, the (new) outbox had sent 3."""
    box = Outbox(tmp_path / "o.db", device_id="d-1")
    fill(box, 3)
    transport = Scripted(lambda body: Response(200, b'{"acked_through": 1999, "stored": 0, "duplicates": 3}'))
    with caplog.at_level(logging.ERROR, logger="edge_runtime.sync"), pytest.raises(SyncError) as info:
        client(transport).sync_once(box)
    message = str(info.value)
    assert "acknowledged through seq 1999" in message and "never sent a seq above 3" in message
    assert box.epoch in message
    assert len(transport.bodies) == 1  # not retried
    assert (box.backlog(), info.value.report.marked) == (3, 0)  # type: ignore[union-attr]
    assert [r.levelno for r in caplog.records] == [logging.ERROR] and "1999" in caplog.records[0].getMessage()
    assert box.status()["sync_alert"] == message
    # Once central and the outbox agree again, the alert goes away.
    assert client(Scripted(ack_all)).sync_once(box).marked == 3
    assert box.status()["sync_alert"] is None
    box.close()


def test_a_lost_reply_of_a_larger_batch_still_counts_as_sent(tmp_path) -> None:
    """An ack above this batch but within what an earlier (unanswered) batch sent is consistent."""
    box = Outbox(tmp_path / "o.db", device_id="d-1")
    fill(box, 10)

    def lost(body: dict[str, Any]) -> Response:
        raise SyncError("reply lost")  # final, so the round stops with the batch sent

    with pytest.raises(SyncError):
        client(Scripted(lost), batch_size=10).sync_once(box)
    assert (box.sent_through(), box.backlog()) == (10, 10)
    answer = Scripted(lambda body: Response(200, b'{"acked_through": 10, "stored": 0, "duplicates": 4}'))
    assert client(answer, batch_size=4).sync_once(box).marked == 10
    box.close()


def test_an_ack_echoing_another_epoch_marks_nothing(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", device_id="d-1")
    fill(box, 2)
    other = "0" * 32
    with pytest.raises(SyncError) as info:
        client(Scripted(lambda body: ack_all(body, epoch=other))).sync_once(box)
    assert f"central acknowledged epoch {other!r} but this outbox's epoch is {box.epoch!r}" in str(info.value)
    assert box.backlog() == 2
    box.close()


def test_a_conflict_is_not_retried_marks_nothing_and_shows(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, device_id="d-1")
    fill(box, 4)
    detail = b'{"detail": "seq 2 of epoch e is stored with other content"}'
    transport = Scripted(lambda body: Response(409, detail))
    with pytest.raises(SyncError) as info:
        client(transport).sync_once(box)
    assert info.value.status == 409 and len(transport.bodies) == 1
    assert "conflicting replay" in str(info.value)
    assert "seq 2 of epoch e is stored with other content" in str(info.value)
    assert box.backlog() == 4
    box.close()
    # `edge-runtime status` shows it until a sync succeeds.
    from edge_runtime.cli import main

    monkeypatch.setenv("EDGESEG_OUTBOX", str(path))
    monkeypatch.setenv("EDGESEG_DEVICE_ID", "d-1")
    monkeypatch.delenv("EDGESEG_ARTIFACT", raising=False)
    monkeypatch.delenv("EDGESEG_CONFIG", raising=False)
    assert main(["status"]) == 0
    assert "conflicting replay" in json.loads(capsys.readouterr().out)["outbox"]["sync_alert"]


# ---------------------------------------------------------------------- item 7
@pytest.fixture
def stub_servers() -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Two loopback HTTP servers; server 0 redirects /redirect to server 1. Every request
    either receives is recorded with its Authorization header."""
    seen: list[dict[str, Any]] = []
    urls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append({"server": self.server.server_address[1], "path": self.path,
                         "auth": self.headers.get("Authorization")})  # fmt: skip
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", f"{urls[1]}/stolen")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers:
        urls.append(f"http://127.0.0.1:{server.server_address[1]}")
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield urls, seen
    for server in servers:
        server.shutdown()
        server.server_close()


def test_plain_http_needs_the_development_flag() -> None:
    with pytest.raises(ValueError, match="must be an https URL: plain http sends the device token in clear text"):
        HeadOfficeClient("http://127.0.0.1:8000", device_id="d", token="t")
    assert HeadOfficeClient("http://127.0.0.1:8000", device_id="d", token="t", allow_http=True).origin == (
        "http", "127.0.0.1", 8000,
    )  # fmt: skip


def test_redirects_are_not_followed(stub_servers) -> None:
    urls, seen = stub_servers
    office = HeadOfficeClient(urls[0], device_id="d", token="secret-token", transport=UrllibTransport(),
                              allow_http=True, retry=RetryPolicy(max_retries=0))  # fmt: skip
    with pytest.raises(SyncError) as info:
        office.request("GET", "/redirect")
    assert info.value.status == 302 and "redirect to" in str(info.value) and "not followed" in str(info.value)
    assert [s["path"] for s in seen] == ["/redirect"]  # the other server never heard from us


@pytest.mark.parametrize("where", ["absolute", "scheme-relative", "other-port", "other-scheme"])
def test_urls_off_centrals_origin_never_get_the_token(stub_servers, where) -> None:
    urls, seen = stub_servers
    port = urls[0].rsplit(":", 1)[1]
    target = {
        "absolute": f"{urls[1]}/v1/models/x/files/model.onnx",
        "scheme-relative": "//" + urls[1].split("//", 1)[1] + "/model.onnx",
        "other-port": f"{urls[1]}/model.onnx",
        "other-scheme": f"https://127.0.0.1:{port}/model.onnx",
    }[where]
    office = HeadOfficeClient(urls[0], device_id="d", token="secret-token", allow_http=True)
    with pytest.raises(SyncError, match="refusing to send this device's token to"):
        office.request("GET", target)
    assert seen == []
    assert office.request("GET", f"{urls[0]}/same-origin") == b"{}"  # central's own origin is fine
    assert seen[0]["auth"] == "Bearer secret-token"
