"""Issue 10, items 3 and 4: a corrupt outbox is moved aside (never deleted) and a new epoch
starts, reported to central; synced rows are pruned past a retention, unsynced never; a disk
running out of space is warned about before it is full."""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
from typing import Any

import pytest
from edge_update_stub import request_body

from edge_runtime.client import HeadOfficeClient, Request, Response, RetryPolicy
from edge_runtime.outbox import QUARANTINED, Outbox
from edge_runtime.sync import SyncClient

DAY_US = 86_400 * 1_000_000
NOW_US = 1_800_000_000 * 1_000_000


def fill(box: Outbox, n: int, *, classified_at_us: int | None = None) -> None:
    for i in range(n):
        box.append(segment="A", probabilities={"A": 0.5, "B": 0.5}, model_version="m/20261127T000000Z",
                   customer_ref=f"c{i}", classified_at_us=classified_at_us)  # fmt: skip


def make_outbox(tmp_path, rows: int) -> tuple[Any, str]:
    path = tmp_path / "o.db"
    box = Outbox(path, device_id="d-1")
    fill(box, rows)
    epoch = box.epoch
    box.close()
    assert not (tmp_path / "o.db-wal").exists() or (tmp_path / "o.db-wal").stat().st_size == 0
    return path, epoch


def random_bytes(path) -> None:  # type: ignore[no-untyped-def]
    path.write_bytes(random.Random(1).randbytes(64 * 1024))


def truncated(path) -> None:  # type: ignore[no-untyped-def]
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def damaged_pages(path) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(path.read_bytes())
    rng = random.Random(2)
    for page in range(2, len(data) // 1024):  # keep the header page, scribble over every other
        if page % 2 == 0:
            data[page * 1024 : page * 1024 + 1024] = rng.randbytes(1024)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [random_bytes, truncated, damaged_pages], ids=["random", "truncated", "pages"])
def test_a_corrupt_outbox_is_moved_aside_and_a_new_epoch_starts(tmp_path, caplog, corrupt) -> None:
    path, old_epoch = make_outbox(tmp_path, 3000)
    corrupt(path)
    broken = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="edge_runtime"):
        box = Outbox(path, device_id="d-1")  # no sqlite3.DatabaseError
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("o.db.corrupt-")]
    assert aside.read_bytes() == broken  # kept, byte for byte
    assert box.epoch != old_epoch and box.last_seq() == 0
    fill(box, 1)
    assert box.last_seq() == 1  # the new epoch starts at seq 1
    [event] = box.events()
    assert (event["kind"], event["detail"]["quarantined_as"], event["detail"]["epoch_new"]) == (
        QUARANTINED, str(aside), box.epoch,
    )  # fmt: skip
    assert event["reported"] is False and box.status()["events_unreported"] == [event]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "moved aside to " + aside.name in caplog.records[0].getMessage()
    box.close()
    assert len(Outbox(path, device_id="d-1").events()) == 1  # a healthy file is left alone


def test_the_cli_survives_a_corrupt_outbox(tmp_path, monkeypatch, capsys) -> None:
    from edge_runtime.cli import main

    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("EDGESEG_OUTBOX", str(path))
    monkeypatch.setenv("EDGESEG_DEVICE_ID", "d-1")
    for name in ("EDGESEG_ARTIFACT", "EDGESEG_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert main(["status"]) == 0
    captured = capsys.readouterr()
    outbox = json.loads(captured.out)["outbox"]
    assert outbox["last_seq"] == 0 and outbox["events_unreported"][0]["kind"] == QUARANTINED
    assert "Traceback" not in captured.err


class Central:
    """Acks batches; answers the events route with ``events_status``."""

    def __init__(self, events_status: int) -> None:
        self.events_status = events_status
        self.events: list[dict[str, Any]] = []

    def handle_request(self, request: Request) -> Response:
        body = request_body(request)
        if request.url.endswith("/events"):
            self.events.append(body)
            return Response(self.events_status, b'{"detail": "not here"}' if self.events_status >= 400 else b"{}")
        seqs = [r["seq"] for r in body["results"]]
        return Response(200, json.dumps({"acked_through": seqs[-1], "stored": len(seqs), "duplicates": 0}).encode())


def sync(box: Outbox, central: Central) -> Any:
    office = HeadOfficeClient("https://hq.invalid", device_id="d-1", token="t", transport=central,
                              retry=RetryPolicy(max_retries=0))  # fmt: skip
    return SyncClient(office).sync_once(box)


def test_a_quarantine_is_reported_to_central_once(tmp_path) -> None:
    path = tmp_path / "o.db"
    random_bytes(path)
    box = Outbox(path, device_id="d-1")
    fill(box, 2)
    away = Central(404)  # a central without the route: the event stays for later
    report = sync(box, away)
    assert (report.marked, report.events_reported, len(away.events)) == (2, 0, 1)
    assert box.events(unreported_only=True) != []
    central = Central(201)
    assert sync(box, central).events_reported == 1
    [sent] = central.events
    assert (sent["kind"], sent["epoch_old"], sent["epoch_new"]) == (QUARANTINED, None, box.epoch)
    assert json.loads(sent["detail"])["quarantined_as"].startswith(str(path) + ".corrupt-")
    assert sync(box, central).events_reported == 0 and len(central.events) == 1
    box.close()


# ---------------------------------------------------------------------- item 4
def seqs_in(path) -> list[int]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM results ORDER BY seq")]


def test_synced_rows_are_pruned_by_age_and_count_unsynced_never(tmp_path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, device_id="d-1", retain_synced_rows=100, retain_synced_days=7)
    fill(box, 5, classified_at_us=NOW_US - 30 * DAY_US)  # a month old
    fill(box, 5, classified_at_us=NOW_US - DAY_US)
    assert box.prune(now_us=NOW_US) == 0  # nothing synced: nothing pruned, however old
    box.mark_synced(range(1, 9))
    assert box.prune(now_us=NOW_US) == 5 and seqs_in(path) == [6, 7, 8, 9, 10]
    box.retain_synced_rows = 2
    assert box.prune(now_us=NOW_US) == 1 and seqs_in(path) == [7, 8, 9, 10]
    box.mark_synced([9, 10])
    box.retain_synced_rows = 0
    box.prune(now_us=NOW_US)
    assert seqs_in(path) == [10]  # the newest row stays, so seqs are never reused
    fill(box, 1)
    assert seqs_in(path) == [10, 11] and box.backlog() == 1
    box.close()


def test_sync_prunes_after_marking(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", device_id="d-1", retain_synced_rows=3)
    fill(box, 10)
    report = sync(box, Central(201))
    assert (report.marked, report.pruned) == (10, 7) and seqs_in(tmp_path / "o.db") == [8, 9, 10]
    box.close()


def test_low_disk_space_is_warned_about_before_it_is_full(tmp_path, caplog) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        box = Outbox(tmp_path / "o.db", device_id="d-1", min_free_bytes=free * 10)
    assert box.status()["disk_low"] is True
    [warning] = caplog.records
    assert "MB free on its disk" in warning.getMessage() and "classification stops" in warning.getMessage()
    assert box.check_disk() is True and len(caplog.records) == 1  # once per crossing, not per check
    box.min_free_bytes = 0
    assert box.check_disk() is False and box.status()["disk_low"] is False
    box.close()


def test_retention_settings(tmp_path) -> None:
    from edge_runtime._settings import get_settings

    defaults = get_settings({})
    assert (defaults.retain_synced_rows, defaults.retain_synced_days, defaults.min_free_mb) == (100_000, 30.0, 256.0)
    custom = get_settings({"EDGESEG_RETAIN_SYNCED_ROWS": "500", "EDGESEG_RETAIN_SYNCED_DAYS": "2",
                           "EDGESEG_MIN_FREE_MB": "1024", "EDGESEG_ALLOW_HTTP": "yes"})  # fmt: skip
    assert (custom.retain_synced_rows, custom.retain_synced_days, custom.min_free_mb, custom.allow_http) == (
        500, 2.0, 1024.0, True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="The 'retain_synced_days' setting must be > 0. Got 0.0 instead."):
        get_settings({"EDGESEG_RETAIN_SYNCED_DAYS": "0"})


def test_an_outbox_damaged_while_open_ends_a_command_with_a_message(tmp_path, monkeypatch, capsys) -> None:
    from edge_runtime.cli import main

    def damaged(self: Outbox, limit: int) -> list[dict[str, Any]]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def nothing_to_erase(self: object, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/v1/devices/d-1/erasures")  # the round's first call
        return {"erasures": []}

    from edge_runtime.client import HeadOfficeClient

    monkeypatch.setattr(Outbox, "pending", damaged)
    # sync applies central's erasures before it reads the outbox; answer that call so the
    # damaged outbox is what the round meets (central itself is hq.invalid)
    monkeypatch.setattr(HeadOfficeClient, "request_json", nothing_to_erase)
    monkeypatch.setenv("EDGESEG_OUTBOX", str(tmp_path / "o.db"))
    monkeypatch.setenv("EDGESEG_DEVICE_TOKEN", "t")
    monkeypatch.delenv("EDGESEG_CONFIG", raising=False)
    assert main(["sync", "--central", "https://hq.invalid", "--device-id", "d-1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge-runtime sync: outbox error: DatabaseError: database disk image is malformed")
    assert "Traceback" not in err
