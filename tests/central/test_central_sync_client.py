"""The device's sync client against a real central app, with faults injected in its transport.

The transport seam is the head office client's (``handle_request(Request) -> Response``): here
it is FastAPI's TestClient, wrapped by transports that fail before or after central saw the
request, so the one retry policy of ``HeadOfficeClient`` is what the tests exercise."""

from __future__ import annotations

import json
import random
import urllib.parse

import pytest
from central_helpers import ADMIN, MODEL_VERSION, fill_outbox

from edge_runtime.client import HeadOfficeClient, Request, Response, RetryPolicy
from edge_runtime.exceptions import RetryableError, SyncError
from edge_runtime.outbox import Outbox
from edge_runtime.sync import DriftSpool, SyncClient


class AppTransport:
    """The head office client's transport over FastAPI's TestClient (central in process)."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.calls = 0

    def handle_request(self, request: Request) -> Response:
        self.calls += 1
        answer = self.client.request(
            request.method,
            urllib.parse.urlsplit(request.url).path,
            content=request.content,
            headers=dict(request.headers),
        )
        return Response(answer.status_code, answer.content, {k.lower(): v for k, v in answer.headers.items()})


class FaultyTransport:
    """Fails some requests before they reach central and loses the reply of others."""

    def __init__(self, inner, *, seed: int, p_before: float, p_after: float):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.random = random.Random(seed)
        self.p_before, self.p_after = p_before, p_after
        self.before = self.after = 0

    def handle_request(self, request: Request) -> Response:
        roll = self.random.random()
        if roll < self.p_before:
            self.before += 1
            raise RetryableError("connection refused")
        answer = self.inner.handle_request(request)
        if roll < self.p_before + self.p_after:
            self.after += 1  # central stored the batch, the device never hears it
            raise RetryableError("connection reset by peer")
        return answer


def head_office(transport, *, device_id="d-1", token="t", sleep=None, **retry) -> HeadOfficeClient:  # type: ignore[no-untyped-def]
    return HeadOfficeClient(
        "http://central.invalid", device_id=device_id, token=token, transport=transport,
        retry=RetryPolicy(**retry), sleep=sleep if sleep is not None else (lambda s: None), random_state=0,
        allow_http=True,
    )  # fmt: skip


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def test_lost_requests_and_replies_end_with_every_result_once(api, device, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    fill_outbox(outbox, 237)
    faulty = FaultyTransport(AppTransport(api.client), seed=3, p_before=0.25, p_after=0.25)
    sleeps: list[float] = []
    office = head_office(faulty, device_id=device["id"], token=device["token"], sleep=sleeps.append, max_retries=50)
    report = SyncClient(office, batch_size=20).sync_once(outbox)
    assert faulty.before > 3 and faulty.after > 3
    assert report.retries == faulty.before + faulty.after == len(sleeps)
    assert (report.batches, report.marked, report.acked_through) == (12, 237, 237)
    # Replies lost after central stored a batch come back as duplicates on the resend.
    assert report.stored + report.duplicates == report.sent == 237
    assert report.duplicates >= 20 * faulty.after - 20
    assert outbox.backlog() == 0
    assert api.count_results(device["id"]) == 237
    # Full jitter: each wait lies within the exponential ceiling for its attempt number.
    assert all(0 <= s <= 60 for s in sleeps)


def test_retry_after_is_honoured(api, device, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    fill_outbox(outbox, 5)
    inner = AppTransport(api.client)

    class Busy:
        calls = 0

        def handle_request(self, request: Request) -> Response:
            self.calls += 1
            if self.calls <= 2:
                return Response(503, b'{"detail": "restarting"}', {"retry-after": "7"})
            return inner.handle_request(request)

    sleeps: list[float] = []
    office = head_office(Busy(), device_id=device["id"], token=device["token"], sleep=sleeps.append,
                         backoff_base=0.1, backoff_cap=1.0)  # fmt: skip
    report = SyncClient(office).sync_once(outbox)
    assert sleeps == [7.0, 7.0]
    assert (report.retries, report.marked, outbox.backlog()) == (2, 5, 0)
    assert report.errors == ["POST http://central.invalid/v1/results:batch: HTTP 503: restarting"] * 2


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    fixed = RetryPolicy(jitter=False, backoff_base=0.5, backoff_cap=4.0)
    assert [fixed.delay(a, random.Random(0)) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert fixed.delay(0, random.Random(0), retry_after=9.0) == 9.0
    assert RetryPolicy(max_retry_after=30.0).delay(0, random.Random(0), retry_after=3600.0) == 30.0
    jittered = head_office(None, backoff_base=0.5, backoff_cap=4.0)
    delays = [jittered.backoff(3) for _ in range(200)]
    assert 0 <= min(delays) and max(delays) <= 4.0 and len(set(delays)) > 150


def test_refused_batch_marks_nothing_and_raises(api, device, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    fill_outbox(outbox, 3)
    fill_outbox(outbox, 2, model_version="retail-tier/19990101T000000Z")
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    with pytest.raises(SyncError) as info:
        SyncClient(office, batch_size=10).sync_once(outbox)
    assert str(info.value) == (
        "POST http://central.invalid/v1/results:batch: HTTP 422: "
        "results[3].model_version: 'retail-tier/19990101T000000Z' is not registered at central"
    )
    assert info.value.status == 422 and info.value.retry_after is None
    assert info.value.report is not None and info.value.report.marked == 0
    assert outbox.backlog() == 5 and api.count_results() == 0


def test_unreachable_central_gives_up_after_max_retries(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id="d-1")
    fill_outbox(outbox, 4)

    class Down:
        def handle_request(self, request: Request) -> Response:
            raise RetryableError("connection refused")

    sleeps: list[float] = []
    client = SyncClient(head_office(Down(), sleep=sleeps.append, max_retries=3))
    with pytest.raises(SyncError, match="central unreachable after 4 attempts: connection refused"):
        client.sync_once(outbox)
    assert len(sleeps) == 3 and outbox.backlog() == 4


@pytest.mark.parametrize(
    ("ack", "expected"),
    [
        ({"acked_through": 2, "stored": 2, "duplicates": 2}, [1, 2, 5, 6]),
        ({"acked_through": 2, "stored": 1, "duplicates": 0}, [1, 2]),
        ({"acked_through": 9, "stored": 0, "duplicates": 1}, [1, 2, 5, 6]),
    ],
    ids=["all-held", "short-ack", "short-ack-high-watermark"],
)
def test_only_what_central_holds_is_marked(ack, expected) -> None:
    assert SyncClient.acknowledged([1, 2, 5, 6], ack) == expected


def test_bad_parameters_are_named() -> None:
    with pytest.raises(
        ValueError, match="The 'batch_size' parameter of SyncClient must be an int >= 1. Got 0 instead."
    ):
        SyncClient(head_office(None), batch_size=0)
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL. Got 'ftp://x' instead."):
        HeadOfficeClient("ftp://x", device_id="d", token="t")
    with pytest.raises(ValueError, match="must be an https URL: plain http sends the device token in clear text"):
        HeadOfficeClient("http://hq.example", device_id="d", token="t")
    with pytest.raises(ValueError, match="The 'max_retries' parameter of RetryPolicy must be an int >= 0. Got -1"):
        RetryPolicy(max_retries=-1)


def test_follow_keeps_syncing_and_backs_off_while_central_is_away(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id="d-1")
    answers = iter(["down", "down", "ok", "ok"])
    outcomes: list = []

    class Flaky:
        def handle_request(self, request: Request) -> Response:
            if next(answers) == "down":
                raise RetryableError("connection refused")
            results = json.loads(request.content or b"")["results"]
            ack = {"acked_through": results[-1]["seq"], "stored": len(results), "duplicates": 0}
            return Response(200, json.dumps(ack).encode())

    sleeps: list[float] = []
    client = SyncClient(head_office(Flaky(), sleep=sleeps.append, max_retries=0))
    fill_outbox(outbox, 3)
    client.follow(outbox, interval=5.0, stop=lambda: len(outcomes) >= 3, on_report=outcomes.append)
    assert [type(o).__name__ for o in outcomes] == ["RetryableError", "RetryableError", "SyncReport"]
    assert outcomes[2].marked == 3 and outbox.backlog() == 0
    assert sleeps == [5.0, 5.0]  # the interval floors the backoff between rounds


def test_sync_follow_ends_after_the_round_a_sigterm_arrives_in(tmp_path) -> None:
    """A service manager's stop mid-round: the round still delivers and reports, then follow ends."""
    import os
    import signal
    import threading

    from edge_runtime.cli._common import stop_after_round_on_sigterm

    outbox = Outbox(tmp_path / "outbox.db", device_id="d-1")
    fill_outbox(outbox, 2)
    outcomes: list = []

    class StoppedMidRequest:
        def handle_request(self, request: Request) -> Response:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the batch is in flight
            results = json.loads(request.content or b"")["results"]
            return Response(
                200, json.dumps({"acked_through": results[-1]["seq"], "stored": 2, "duplicates": 0}).encode()
            )

    before = signal.getsignal(signal.SIGTERM)
    try:
        stopping = stop_after_round_on_sigterm()
        waited: list[float] = []
        SyncClient(head_office(StoppedMidRequest())).follow(
            outbox, interval=3600.0, stop=stopping.is_set, pause=lambda s: waited.append(s) or stopping.wait(s),
            on_report=outcomes.append,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, before)
    assert isinstance(stopping, threading.Event) and stopping.is_set()
    [report] = outcomes  # the round finished and was reported; no second round, no hour-long wait
    assert report.marked == 2 and outbox.backlog() == 0
    assert waited == []


def _snapshot(model_version: str, recency: list[int], country: list[int]) -> dict:
    """A Runtime.drift_snapshot() for the test artifact's reference (3 bins + missing; 2 + other + missing)."""
    return {"model_version": model_version, "since": "2026-11-30T00:00:00Z", "until": "2026-11-30T00:15:00Z",
            "rows": sum(recency), "inputs": {"recency_days": {"type": "number", "counts": recency},
                                             "country": {"type": "string", "counts": country}}}  # fmt: skip


def test_spooled_drift_is_summed_per_model_and_sent_once(api, device, tmp_path) -> None:
    spool = DriftSpool(tmp_path / "outbox.db")
    spool.save(_snapshot(MODEL_VERSION, [1, 2, 0, 0], [3, 0, 0, 0]))
    spool.save(_snapshot(MODEL_VERSION, [0, 0, 1, 1], [0, 1, 1, 0]))
    assert spool.save(_snapshot(MODEL_VERSION, [0, 0, 0, 0], [0, 0, 0, 0])) is None  # nothing counted
    spool.save(_snapshot("retail-tier/19990101T000000Z", [1, 0, 0, 0], [1, 0, 0, 0]))
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    client = SyncClient(head_office(AppTransport(api.client), device_id=device["id"], token=device["token"]))

    report = client.sync_once(outbox, drift=spool)
    assert (report.drift_reports, report.drift_rows) == (1, 5)
    # Counts of a model central does not know can never be accepted: dropped, and said so.
    [refused] = report.errors
    assert refused.startswith("POST http://central.invalid/v1/drift: HTTP 404: ")
    assert spool.pending() == []
    [shown] = api.client.get("/v1/stats/drift", headers=ADMIN).json()
    assert (shown["device_id"], shown["model_version"], shown["rows"]) == (device["id"], MODEL_VERSION, 5)
    # What central computed is the PSI of the summed counts.
    assert client.report_drift(_snapshot(MODEL_VERSION, [1, 2, 1, 1], [3, 1, 1, 0]))["psi"] == shown["psi"]
    assert client.sync_once(outbox, drift=spool).drift_reports == 0  # nothing new: nothing sent


def test_drift_stays_spooled_while_central_is_away(tmp_path) -> None:
    class Down:
        def handle_request(self, request: Request) -> Response:
            raise RetryableError("connection refused")

    spool = DriftSpool(tmp_path / "o.db")
    saved = spool.save(_snapshot(MODEL_VERSION, [1, 0, 0, 0], [1, 0, 0, 0]))
    with pytest.raises(SyncError, match="central unreachable after 2 attempts"):
        SyncClient(head_office(Down(), max_retries=1)).sync_once(
            Outbox(tmp_path / "o.db", device_id="d-1"), drift=spool
        )
    assert [p.ids for p in spool.pending()] == [(saved,)]


def test_follow_sends_drift_first_and_then_every_drift_interval(tmp_path) -> None:
    posted: list[dict] = []

    class Central:
        def handle_request(self, request: Request) -> Response:
            body = json.loads(request.content or b"")
            posted.append(body)
            return Response(201, json.dumps({"flagged": ["country"]}).encode())

    spool = DriftSpool(tmp_path / "o.db")
    spool.save(_snapshot(MODEL_VERSION, [1, 0, 0, 0], [1, 0, 0, 0]))
    now = [0.0]
    outcomes: list = []

    def after_round(outcome) -> None:  # type: ignore[no-untyped-def]
        outcomes.append(outcome)
        now[0] += 100.0  # each round, 100 s pass and the Runtime spools one more row
        spool.save(_snapshot(MODEL_VERSION, [0, 1, 0, 0], [0, 1, 0, 0]))

    client = SyncClient(head_office(Central()))
    client.follow(Outbox(tmp_path / "o.db", device_id="d-1"), drift=spool, interval=1.0, drift_interval=250.0,
                  stop=lambda: len(outcomes) >= 5, on_report=after_round, clock=lambda: now[0])  # fmt: skip
    # Rounds at t = 0, 100, 200, 300, 400: drift goes with the first and with the one at t=300.
    assert [o.drift_reports for o in outcomes] == [1, 0, 0, 1, 0]
    assert [sum(p["histograms"]["recency_days"]) for p in posted] == [1, 3]
    assert outcomes[0].drift_flagged == ["country"]
    assert len(spool.pending()) == 1  # the row spooled after the last round waits


def test_public_names() -> None:
    import edge_runtime.client as client
    import edge_runtime.sync as sync
    import edge_runtime.updates as updates

    assert sorted(client.__all__) == [
        "HeadOfficeClient", "Request", "Response", "RetryPolicy", "Transport", "UrllibTransport",
        "parse_retry_after",
    ]  # fmt: skip
    assert sorted(sync.__all__) == [
        "BATCH_PATH", "DRIFT_PATH", "DriftSpool", "ErasureTarget", "PendingDrift", "SyncClient", "SyncReport",
    ]  # fmt: skip
    assert sorted(updates.__all__) == [
        "CURRENT_LINK", "CURRENT_PATH", "ModelUpdater", "PREVIOUS_LINK", "STEPS", "UpdateReport",
    ]  # fmt: skip
    for module in (client, sync, updates):
        assert all(hasattr(module, n) for n in module.__all__)


def test_a_recreated_outbox_is_a_new_epoch_and_loses_nothing(api, device, tmp_path) -> None:
    """Issue 10 item 2 end to end: the probe's 'deleted outbox restarts at seq 1' lost 3 of 3."""
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    path = tmp_path / "outbox.db"
    old = Outbox(path, device_id=device["id"])
    fill_outbox(old, 30)
    assert SyncClient(office).sync_once(old).marked == 30
    old.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"outbox.db{suffix}").unlink(missing_ok=True)
    new = Outbox(path, device_id=device["id"])
    fill_outbox(new, 3)
    report = SyncClient(office).sync_once(new)
    assert (report.stored, report.duplicates, report.marked, report.acked_through) == (3, 0, 3, 3)
    assert api.count_results(device["id"]) == 33
    new.close()


def test_a_quarantined_outbox_is_reported_to_central(api, device, tmp_path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"\x00garbage, not a database" * 1000)
    outbox = Outbox(path, device_id=device["id"])
    fill_outbox(outbox, 2)
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    report = SyncClient(office).sync_once(outbox)
    assert (report.marked, report.events_reported) == (2, 1)
    [event] = api.client.get(f"/v1/devices/{device['id']}/events", headers=ADMIN).json()
    assert (event["kind"], event["epoch_old"], event["epoch_new"]) == ("outbox_quarantined", None, outbox.epoch)
    assert ".corrupt-" in event["detail"]
    assert SyncClient(office).sync_once(outbox).events_reported == 0  # once
    outbox.close()
