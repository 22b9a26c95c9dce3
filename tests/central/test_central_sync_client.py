"""The device's sync client against a real central app, with faults injected in its transport."""

from __future__ import annotations

import random

import pytest
from central_helpers import TestClientTransport, fill_outbox

from edge_runtime.exceptions import SyncError
from edge_runtime.outbox import Outbox
from edge_runtime.sync import RetryableError, SyncClient


class FaultyTransport:
    """Fails some sends before they reach central and loses the reply of others."""

    def __init__(self, inner, *, seed: int, p_before: float, p_after: float, retry_after=None):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.random = random.Random(seed)
        self.p_before, self.p_after = p_before, p_after
        self.retry_after = retry_after
        self.before = self.after = 0

    def send(self, payload):  # type: ignore[no-untyped-def]
        roll = self.random.random()
        if roll < self.p_before:
            self.before += 1
            raise RetryableError("connection refused", retry_after=self.retry_after)
        ack = self.inner.send(payload)
        if roll < self.p_before + self.p_after:
            self.after += 1  # central stored the batch, the device never hears it
            raise RetryableError("connection reset by peer")
        return ack


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def test_lost_requests_and_replies_end_with_every_result_once(api, device, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    fill_outbox(outbox, 237)
    faulty = FaultyTransport(TestClientTransport(api.client, device["token"]), seed=3, p_before=0.25, p_after=0.25)
    sleeps: list[float] = []
    client = SyncClient(
        "http://central.invalid",
        device_id=device["id"],
        token=device["token"],
        transport=faulty,
        batch_size=20,
        max_retries=50,
        sleep=sleeps.append,
        random_state=0,
    )
    report = client.sync_once(outbox)
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
    calls = {"n": 0}
    inner = TestClientTransport(api.client, device["token"])

    class Busy:
        def send(self, payload):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] <= 2:
                raise RetryableError("HTTP 503", retry_after=7.0)
            return inner.send(payload)

    sleeps: list[float] = []
    client = SyncClient(
        "http://central.invalid",
        device_id=device["id"],
        token="t",
        transport=Busy(),
        sleep=sleeps.append,
        random_state=0,
        backoff_base=0.1,
        backoff_cap=1.0,
    )
    report = client.sync_once(outbox)
    assert sleeps == [7.0, 7.0]
    assert (report.retries, report.marked, outbox.backlog()) == (2, 5, 0)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    client = SyncClient("http://x", device_id="d", token="t", jitter=False, backoff_base=0.5, backoff_cap=4.0)
    assert [client.backoff_delay(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = SyncClient("http://x", device_id="d", token="t", random_state=1)
    delays = [jittered.backoff_delay(3) for _ in range(200)]
    assert 0 <= min(delays) and max(delays) <= 4.0 and len(set(delays)) > 150


def test_refused_batch_marks_nothing_and_raises(api, device, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id=device["id"])
    fill_outbox(outbox, 3)
    fill_outbox(outbox, 2, model_version="retail-tier/19990101T000000Z")
    client = SyncClient(
        "http://central.invalid",
        device_id=device["id"],
        token=device["token"],
        transport=TestClientTransport(api.client, device["token"]),
        batch_size=10,
    )
    with pytest.raises(SyncError) as info:
        client.sync_once(outbox)
    assert str(info.value) == (
        "HTTP 422: results[3].model_version: 'retail-tier/19990101T000000Z' is not registered at central"
    )
    assert info.value.report.marked == 0  # type: ignore[attr-defined]
    assert outbox.backlog() == 5 and api.count_results() == 0


def test_unreachable_central_gives_up_after_max_retries(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id="d-1")
    fill_outbox(outbox, 4)

    class Down:
        def send(self, payload):  # type: ignore[no-untyped-def]
            raise RetryableError("connection refused")

    sleeps: list[float] = []
    client = SyncClient(
        "http://x",
        device_id="d-1",
        token="t",
        transport=Down(),
        max_retries=3,
        sleep=sleeps.append,
        random_state=0,
    )
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
        SyncClient("http://x", device_id="d", token="t", batch_size=0)
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL. Got 'ftp://x' instead."):
        SyncClient("ftp://x", device_id="d", token="t")


def test_follow_keeps_syncing_and_backs_off_while_central_is_away(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", device_id="d-1")
    answers = iter(["down", "down", "ok", "ok"])
    outcomes: list = []

    class Flaky:
        def send(self, payload):  # type: ignore[no-untyped-def]
            if next(answers) == "down":
                raise RetryableError("connection refused")
            n = len(payload["results"])
            return {"acked_through": payload["results"][-1]["seq"], "stored": n, "duplicates": 0}

    sleeps: list[float] = []
    client = SyncClient("http://x", device_id="d-1", token="t", transport=Flaky(), max_retries=0,
                        sleep=sleeps.append, random_state=0)  # fmt: skip
    fill_outbox(outbox, 3)
    client.follow(outbox, interval=5.0, stop=lambda: len(outcomes) >= 3, on_report=outcomes.append)
    assert [type(o).__name__ for o in outcomes] == ["SyncError", "SyncError", "SyncReport"]
    assert outcomes[2].marked == 3 and outbox.backlog() == 0
    assert sleeps == [5.0, 5.0]  # the interval floors the backoff between rounds


def test_public_names() -> None:
    import edge_runtime.sync as sync
    import edge_runtime.updates as updates

    assert sorted(sync.__all__) == [
        "BATCH_PATH", "DRIFT_PATH", "HttpTransport", "RetryableError", "SyncClient", "SyncReport",
        "Transport", "add_sync_commands",
    ]  # fmt: skip
    assert sorted(updates.__all__) == [
        "CURRENT_LINK", "ModelUpdater", "PREVIOUS_LINK", "UpdateReport", "add_update_commands"
    ]  # fmt: skip
    assert all(hasattr(sync, n) for n in sync.__all__)
    assert all(hasattr(updates, n) for n in updates.__all__)
