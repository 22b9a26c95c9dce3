"""``edge-runtime sync`` and ``edge-runtime update`` against a real central (uvicorn)."""

from __future__ import annotations

import json

import pytest
from central_helpers import (
    MODEL_VERSION,
    fill_outbox,
    sqlite_central,
    upload_body,
)

from edge_runtime.outbox import Outbox
from edge_runtime.sync import DriftSpool

pytestmark = pytest.mark.slow


@pytest.fixture
def central(tmp_path, central_signing_key, test_artifact):  # type: ignore[no-untyped-def]
    process = sqlite_central(tmp_path, central_signing_key[1])
    process.start()
    process.call("POST", "/v1/models", upload_body(test_artifact))
    yield process
    process.kill()


def test_sync_command_sends_the_outbox(central, tmp_path, monkeypatch, capsys) -> None:
    from edge_runtime.cli import main

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    outbox_path = tmp_path / "outbox.db"
    outbox = Outbox(outbox_path, device_id=device["id"])
    fill_outbox(outbox, 120)
    outbox.close()
    args = ["sync", "--central", central.url, "--allow-http", "--device-id", device["id"],
            "--outbox", str(outbox_path), "--batch-size", "50"]  # fmt: skip

    monkeypatch.setenv("EDGESEG_DP_EPSILON", "0")  # exact drift counts here; noised: the test below
    monkeypatch.setenv("EDGESEG_DEVICE_TOKEN", "wrong")
    assert main(args) == 1
    assert capsys.readouterr().err == (
        f"edge-runtime sync: failed: POST {central.url}/v1/results:batch: HTTP 401: invalid device token\n"
    )
    monkeypatch.setenv("EDGESEG_DEVICE_TOKEN", device["token"])
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: report[k] for k in ("batches", "sent", "marked", "stored", "acked_through", "backlog")} == {
        "batches": 3, "sent": 120, "marked": 120, "stored": 120, "acked_through": 120, "backlog": 0,
    }  # fmt: skip
    listed = central.call("GET", "/v1/devices")
    assert [(d["results"], d["model_version"]) for d in listed] == [(120, MODEL_VERSION)]

    # Drift counts a Runtime spooled go with the next one-shot sync, once.
    counts = {"recency_days": [5, 0, 0, 1], "country": [0, 0, 4, 2]}
    DriftSpool.for_outbox(outbox_path).save({
        "model_version": MODEL_VERSION, "rows": 6,
        "inputs": {name: {"counts": c} for name, c in counts.items()},
    })  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["batches"], report["drift_reports"], report["drift_rows"]) == (0, 1, 6)
    assert sorted(report["drift_flagged"]) == ["country", "recency_days"]
    [drift] = central.call("GET", "/v1/stats/drift")
    assert (drift["device_id"], drift["rows"], sorted(drift["psi"])) == (device["id"], 6, sorted(counts))
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["drift_reports"] == 0  # nothing new, nothing sent


def test_sync_command_sends_noised_aggregates_by_default(central, tmp_path, monkeypatch, capsys) -> None:
    """Privacy by design (docs/PRIVACY.md): without EDGESEG_DP_EPSILON the drift counts and the
    segment mix leave the device only as a noised report spending the default daily budget."""
    from edge_runtime.cli import main

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    outbox_path = tmp_path / "outbox.db"
    outbox = Outbox(outbox_path, device_id=device["id"])
    fill_outbox(outbox, 30)
    outbox.close()
    DriftSpool.for_outbox(outbox_path).save({
        "model_version": MODEL_VERSION, "rows": 30,
        "inputs": {"recency_days": {"counts": [10, 10, 5, 5]}, "country": {"counts": [20, 5, 3, 2]}},
    })  # fmt: skip
    monkeypatch.delenv("EDGESEG_DP_EPSILON", raising=False)
    monkeypatch.setenv("EDGESEG_DEVICE_TOKEN", device["token"])
    args = ["sync", "--central", central.url, "--allow-http", "--device-id", device["id"], "--outbox", str(outbox_path)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["stored"], report["private_reports"], report["drift_reports"]) == (30, 1, 0)
    budget = central.call("GET", f"/v1/privacy/budgets/{device['id']}")
    assert (budget["reports"], budget["epsilon_spent"], budget["epsilon_limit"]) == (1, 2.0, 2.0)
    [drift] = central.call("GET", "/v1/stats/drift")
    assert drift["device_id"] == device["id"] and sorted(drift["psi"]) == ["country", "recency_days"]


def test_update_command_refuses_a_model_that_cannot_load(
    central, tmp_path, monkeypatch, capsys, central_signing_key
) -> None:
    from edge_runtime.cli import main

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    token_file = tmp_path / "token"
    token_file.write_text(device["token"] + "\n")
    models = tmp_path / "models"
    code = main(["update", "--central", central.url, "--allow-http", "--device-id", device["id"],
                 "--token-file", str(token_file), "--models-dir", str(models),
                 "--public-key", str(central_signing_key[1])])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    # The test artifact is signed but its model.onnx is not a graph: refused, reported, not kept.
    assert code == 1 and report["status"] == "refused"
    assert report["reason"].startswith("ModelLoadError: ")
    assert not (models / "current").exists()
    reports = central.call("GET", f"/v1/devices/{device['id']}/model-reports")
    assert [(r["status"], r["reason"]) for r in reports] == [("refused", report["reason"])]
