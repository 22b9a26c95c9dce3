"""Staged rollouts at central (issue 12) on SQLite and PostgreSQL: canary first, compared with the
champion stores on reported outcomes, promoted or rolled back with a pre-signed order, every step
an audit event; operators pause, promote and roll back by hand; devices long-poll for a change."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from central_helpers import ADMIN, CLASSES, bearer, make_result, write_artifact

from factory.rollback import rollback_order

NAME = "retail-tier"
CHAMPION, CHALLENGER = f"{NAME}/20261126T120000Z", f"{NAME}/20261201T000000Z"
T0 = datetime(2026, 12, 1)


@pytest.fixture
def fleet(api: Any, tmp_path: Path, central_signing_key: Any) -> dict[str, Any]:
    """Champion on every store (s1..s3, one device each), challenger registered, not rolled out."""
    key = central_signing_key[0]
    for model_version in (CHAMPION, CHALLENGER):
        folder = write_artifact(tmp_path, key, name=NAME, version=model_version.split("/")[1])
        api.publish(folder, "all" if model_version == CHAMPION else "none")
    devices = {store: api.add_device(store) for store in ("s1", "s2", "s3")}
    orders = [rollback_order(CHALLENGER, CHAMPION, key) for _ in range(2)]
    return {"devices": devices, "orders": orders}


def _report(api: Any, device: dict[str, str], model_version: str, start: int, n: int, hit_rate: float) -> None:
    """``n`` results of ``device`` and their outcomes: the first ``hit_rate`` share correct."""
    results = [
        make_result(
            start + i, customer_ref=f"{device['id']}-{start + i}", segment=CLASSES[i % 3],
            model_version=model_version, classified_at="2026-11-29T10:00:00Z",
        )
        for i in range(n)
    ]  # fmt: skip
    body = {"device_id": device["id"], "results": results}
    assert api.client.post("/v1/results:batch", json=body, headers=bearer(device["token"])).status_code == 200
    outcomes = [
        {
            "customer_ref": r["customer_ref"],
            "actual_segment": r["segment"] if i < hit_rate * n else CLASSES[(i + 1) % 3],
        }
        for i, r in enumerate(results)
    ]
    assert api.client.post("/v1/outcomes", json={"outcomes": outcomes}, headers=ADMIN).status_code == 200


def _service(api: Any, settings: Any) -> Any:
    from central.services import rollouts

    def evaluate(now: datetime) -> Any:
        with api.db.sessionmaker() as session:
            [rollout] = rollouts.evaluate_rollouts(
                session, now=now, drift_threshold=0.2, public_key_path=settings.public_key_path,
                max_future_skew_s=86400,
            )  # fmt: skip
            return rollout.state, [(e.action, e.actor, e.reason) for e in rollout.events]

    return evaluate


def _start(api: Any, settings: Any, orders: list[dict[str, Any]], canary: list[str]) -> int:
    from central.services import rollouts

    with api.db.sessionmaker() as session:
        rollout = rollouts.start_rollout(
            session, CHALLENGER, canary=canary, watch_s=7 * 86400, rollback_orders=orders,
            public_key_path=settings.public_key_path, actor="ops@hq", now=T0, min_outcomes=30,
        )  # fmt: skip
        return int(rollout.id)


def _current(api: Any, device: dict[str, str]) -> dict[str, Any]:
    response = api.client.get("/v1/models/current", headers=bearer(device["token"]))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_canary_as_good_is_promoted_to_every_store_after_the_watch(api, settings, fleet) -> None:  # type: ignore[no-untyped-def]
    devices = fleet["devices"]
    _start(api, settings, fleet["orders"][:1], ["s1"])
    assert _current(api, devices["s1"])["model_version"] == CHALLENGER
    assert _current(api, devices["s2"])["model_version"] == CHAMPION
    evaluate = _service(api, settings)
    assert evaluate(T0 + timedelta(days=1))[0] == "canary"  # no outcomes yet: keep watching
    _report(api, devices["s1"], CHALLENGER, 1, 40, 0.8)
    for store in ("s2", "s3"):
        _report(api, devices[store], CHAMPION, 1, 40, 0.8)
    state, events = evaluate(T0 + timedelta(days=3))
    assert state == "canary" and "watch window open" in events[-1][2]  # as good, but the watch runs 7 days
    state, events = evaluate(T0 + timedelta(days=8))
    assert state == "promoted"
    assert [e[0] for e in events] == ["started", "evaluated", "evaluated", "evaluated", "promoted"]
    assert events[0][1] == "ops@hq" and events[-1][1] == "central scheduler"
    for device in devices.values():
        assert _current(api, device)["model_version"] == CHALLENGER
    listed = api.client.get("/v1/staged-rollouts", headers=ADMIN).json()
    assert listed[0]["state"] == "promoted" and len(listed[0]["events"]) == 5
    page = api.client.get("/", headers=ADMIN)
    if page.status_code == 200:
        assert "Model rollouts" in page.text and "promoted" in page.text


def test_worse_canary_is_rolled_back_with_the_presigned_order(api, settings, fleet) -> None:  # type: ignore[no-untyped-def]
    devices = fleet["devices"]
    _start(api, settings, fleet["orders"], ["s1", "s2"])
    for store in ("s1", "s2"):
        _report(api, devices[store], CHALLENGER, 1, 40, 0.5)
    _report(api, devices["s3"], CHAMPION, 1, 40, 0.9)
    state, events = _service(api, settings)(T0 + timedelta(days=2))
    assert state == "rolled_back", events
    assert "worse than the champion stores" in events[-1][2]
    for store in ("s1", "s2"):  # the canary devices get the champion with the signed order
        offer = _current(api, devices[store])
        assert offer["model_version"] == CHAMPION
    assert _current(api, devices["s3"])["model_version"] == CHAMPION


def test_refused_model_rolls_back_and_operators_pause_and_promote(api, settings, fleet) -> None:  # type: ignore[no-untyped-def]
    from central.services import rollouts
    from central.services.errors import Conflict, Rejected

    devices = fleet["devices"]
    with api.db.sessionmaker() as session, pytest.raises(Rejected, match="2 canary stores need 2"):
        rollouts.start_rollout(
            session, CHALLENGER, canary=["s1", "s2"], watch_s=60, rollback_orders=fleet["orders"][:1],
            public_key_path=settings.public_key_path, actor="ops",
        )  # fmt: skip
    rollout_id = _start(api, settings, fleet["orders"][:1], ["s1"])
    with api.db.sessionmaker() as session:
        rollouts.pause(session, rollout_id, actor="ops", reason="holiday freeze")
        with pytest.raises(Conflict):
            rollouts.pause(session, rollout_id, actor="ops")
        rollouts.resume(session, rollout_id, actor="ops")
    refusal = {"model_version": CHALLENGER, "status": "refused", "reason": "SignatureError: bad"}
    path = f"/v1/devices/{devices['s1']['id']}/model-report"
    assert api.client.post(path, json=refusal, headers=bearer(devices["s1"]["token"])).status_code in (200, 201)
    state, events = _service(api, settings)(T0)
    assert state == "rolled_back" and "refused" in events[-1][2]
    assert [e[0] for e in events] == ["started", "paused", "resumed", "evaluated", "rolled_back"]


def test_long_poll_returns_when_the_store_should_switch(api, fleet) -> None:  # type: ignore[no-untyped-def]
    device = fleet["devices"]["s2"]
    same = api.client.get(f"/v1/models/wait?running={CHAMPION}&timeout=0.3", headers=bearer(device["token"]))
    assert same.json()["changed"] is False and same.json()["model_version"] == CHAMPION
    other = api.client.get(f"/v1/models/wait?running={CHALLENGER}&timeout=5", headers=bearer(device["token"]))
    assert other.json() == {"model_version": CHAMPION, "changed": True, "waited_s": other.json()["waited_s"]}


def test_rollout_commands_start_show_pause_and_roll_back(api, settings, fleet, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import json
    import os

    from central_helpers import ADMIN_TOKEN

    from central.cli import main
    from central.core.config import get_settings

    for name in list(os.environ):
        if name.startswith("EDGESEG_") and name != "EDGESEG_KEY_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("EDGESEG_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY", str(settings.public_key_path))
    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()
    order = tmp_path / "order.json"
    order.write_text(json.dumps(fleet["orders"][0]))
    start = ["rollout", "start", CHALLENGER, "--canary", "s2", "--watch", "7d", "--actor", "ana"]
    assert main([*start[:-2], "--actor", "ana"]) == 1  # no signed order: refused, nothing started
    assert "need 1 distinct signed rollback orders" in capsys.readouterr().err
    assert main([*start, "--rollback-order", str(order)]) == 0
    assert main(["rollout", "pause", "1", "--actor", "ana", "--reason", "checking a store"]) == 0
    assert main(["rollout", "rollback", "1", "--actor", "ana", "--reason", "customer complaints"]) == 0
    capsys.readouterr()
    assert main(["rollout", "show"]) == 0
    shown = capsys.readouterr().out
    assert "rolled_back" in shown and "by ana: customer complaints" in shown and "paused" in shown
    assert _current(api, fleet["devices"]["s2"])["model_version"] == CHAMPION
    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()


def test_drift_flagged_on_the_canary_only_rolls_back(api, settings, fleet) -> None:  # type: ignore[no-untyped-def]
    devices = fleet["devices"]
    _start(api, settings, fleet["orders"][:1], ["s1"])
    steady = {"recency_days": [300, 400, 200, 100], "country": [800, 150, 30, 20]}  # the reference's shape
    shifted = {"recency_days": [0, 0, 100, 900], "country": [0, 0, 1000, 0]}
    for store, version, histograms in (("s1", CHALLENGER, shifted), ("s2", CHAMPION, steady)):
        device = devices[store]
        body = {"device_id": device["id"], "model_version": version, "histograms": histograms}
        response = api.client.post("/v1/drift", json=body, headers=bearer(device["token"]))
        assert response.status_code == 201, response.text
    state, events = _service(api, settings)(T0 + timedelta(days=1))
    assert state == "rolled_back"
    assert "drift on canary devices" in events[-1][2] and "champion stores are not flagged" in events[-1][2]
