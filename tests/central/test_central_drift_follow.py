"""End to end: a device running ``edge-runtime sync --follow`` makes PSI appear for its store.

Real pieces only: central (uvicorn on SQLite) serving the factory's signed model, the device's
``edge-runtime classify`` (a Runtime: outbox plus drift counts, spooled at exit) and then
``edge-runtime sync --follow`` in its own process with a one-second drift interval. Nothing
else sends drift: the test only reads central's stats API until the report is there.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from central_helpers import sqlite_central, upload_body

pytestmark = pytest.mark.slow

STORE = "store-drift-7"
REPEATS = 20  # each golden record this many times: far from the training mix, so PSI is high
WAIT_S = 60.0  # bound on the wait for central to show the report (normally a second or two)


@pytest.fixture
def central(tmp_path, signing_public_key, small_artifact):  # type: ignore[no-untyped-def]
    process = sqlite_central(tmp_path, signing_public_key)
    process.start()
    process.call("POST", "/v1/models", upload_body(small_artifact))
    yield process
    process.kill()


def _device_env(tmp_path: Path, central, device, small_artifact, signing_public_key) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "EDGESEG_ARTIFACT": str(small_artifact),
        "EDGESEG_PUBLIC_KEY": str(signing_public_key),
        "EDGESEG_OUTBOX": str(tmp_path / "outbox.db"),
        "EDGESEG_DEVICE_ID": device["id"],
        "EDGESEG_SECRET": "drift-follow-secret-0123456789",
        "EDGESEG_CENTRAL_URL": central.url,
        "EDGESEG_ALLOW_HTTP": "1",  # central listens on loopback http in the test
        "EDGESEG_DEVICE_TOKEN": device["token"],
        "EDGESEG_SYNC_INTERVAL_S": "0.2",
        "EDGESEG_DRIFT_INTERVAL_S": "1",
        "EDGESEG_DP_EPSILON": "0",  # exact counts: rows are asserted; noised reports: test_central_privacy.py
    }


def _drift_of(central, device_id: str) -> dict | None:  # type: ignore[no-untyped-def]
    return next((d for d in central.call("GET", "/v1/stats/drift") if d["device_id"] == device_id), None)


def test_sync_follow_makes_psi_appear_for_the_store(
    central, small_artifact, signing_public_key, tmp_path, monkeypatch, capsys
) -> None:
    from edge_runtime.cli import main

    device = central.call("POST", "/v1/devices", {"store": STORE})
    env = _device_env(tmp_path, central, device, small_artifact, signing_public_key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    manifest = json.loads((small_artifact / "manifest.json").read_text())
    records = [g["record"] for g in manifest["golden_samples"]] * REPEATS
    records_file = tmp_path / "customers.jsonl"
    records_file.write_text("".join(json.dumps(r) + "\n" for r in records))

    # golden rows have gaps on purpose (one is all missing): the lenient contract classifies them
    assert main(["classify", "--contract", "lenient", str(records_file)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(records)
    assert _drift_of(central, device["id"]) is None  # nothing has sent drift yet

    log = tmp_path / "sync.log"
    with open(log, "wb") as out:
        follow = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime.cli", "sync", "--follow"],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        drift = _drift_of(central, device["id"])
        while drift is None and time.monotonic() < deadline and follow.poll() is None:
            time.sleep(0.2)
            drift = _drift_of(central, device["id"])
    finally:
        follow.send_signal(signal.SIGTERM)
        code = follow.wait(timeout=20)
    assert drift is not None, f"no drift report within {WAIT_S}s: {log.read_text()[-2000:]}"
    assert code == 0, log.read_text()[-2000:]

    stores = {d["id"]: d["store"] for d in central.call("GET", "/v1/devices")}
    assert stores[device["id"]] == STORE
    assert drift["model_version"] == manifest["model_version"]
    assert drift["rows"] == len(records)
    # One PSI per input the manifest has reference bins for, each a real number.
    assert set(drift["psi"]) == set(manifest["reference"])
    assert all(math.isfinite(v) and v >= 0 for v in drift["psi"].values())
    # A handful of records repeated is nothing like the training mix: some input is flagged.
    assert drift["flagged"] and all(drift["psi"][name] > drift["threshold"] for name in drift["flagged"])
    # The same rounds delivered the results, and the spool is empty once central took it.
    assert [d["results"] for d in central.call("GET", "/v1/devices")] == [len(records)]
    assert list((tmp_path / "outbox.db-drift").glob("*.json")) == []
    rounds = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert sum(r["drift_reports"] for r in rounds) == 1
    assert sum(r["drift_rows"] for r in rounds) == len(records)
