"""End to end: devices in separate processes sync through a faulty network to a central that
keeps being SIGKILLed; at the end central holds exactly N results per device.

Real pieces only: uvicorn serving ``central.main:create_app`` on loopback (SQLite file or
PostgreSQL), each device a Python process with the real Outbox and SyncClient, and a
fault-injecting TCP proxy between them. The chaos loop SIGKILLs and restarts central and
devices at random moments; it stops by itself (hard deadline) and reports what it survived.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from central_faultproxy import FaultProxy
from central_helpers import (
    ADMIN_TOKEN,
    CentralProcess,
    free_port,
    upload_body,
)

pytestmark = pytest.mark.slow

DEVICES = 3
N = 600
DEADLINE_S = 80.0
DEVICE_SCRIPT = Path(__file__).with_name("central_e2e_device.py")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _start_device(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, str(DEVICE_SCRIPT), *args], stdout=handle, stderr=subprocess.STDOUT)


def _model(request, central_signing_key, test_artifact):  # type: ignore[no-untyped-def]
    """(artifact, trusted key, device args): the factory's real model when it can be built
    here, else the opaque test artifact with synthetic results."""
    try:
        artifact = request.getfixturevalue("small_artifact")
        public_key = request.getfixturevalue("signing_public_key")
    except pytest.skip.Exception:
        return test_artifact, central_signing_key[1], [], "synthetic"
    return artifact, public_key, ["--artifact", str(artifact), "--public-key", str(public_key)], "runtime"


def test_exactly_n_per_device_through_kills_resets_and_stalls(
    database_url, central_signing_key, test_artifact, tmp_path, request
) -> None:
    backend = request.node.callspec.params["database_url"]
    artifact, public_key, model_args, mode = _model(request, central_signing_key, test_artifact)
    model_version = json.loads((artifact / "manifest.json").read_text())["model_version"]
    rng = random.Random(20261127)
    central = CentralProcess(
        {
            "EDGESEG_DATABASE_URL": database_url,
            "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
            "EDGESEG_ENV": "test",
            "EDGESEG_PUBLIC_KEY_PATH": str(public_key),
        },
        free_port(),
        tmp_path / "central.log",
    )
    central.start()
    proxy = FaultProxy(central.port, seed=7, stall_s=2.5)
    devices: dict[str, dict] = {}
    faults = {"central_kills": 0, "device_kills": 0}
    try:
        central.call("POST", "/v1/models", upload_body(artifact))
        for i in range(DEVICES):
            created = central.call("POST", "/v1/devices", {"store": f"store-{i % 2}"})
            args = [
                "--url", f"http://127.0.0.1:{proxy.port}", "--device-id", created["id"],
                f"--token={created['token']}", "--outbox", str(tmp_path / f"{created['id']}.db"),
                "--n", str(N), "--model-version", model_version, "--seed", str(i), *model_args,
            ]  # fmt: skip
            log = tmp_path / f"{created['id']}.log"
            devices[created["id"]] = {"args": args, "log": log, "proc": _start_device(args, log)}

        deadline = time.monotonic() + DEADLINE_S
        next_central_kill = time.monotonic() + rng.uniform(0.8, 1.5)
        rounds = 0
        while time.monotonic() < deadline:
            running = {d: v for d, v in devices.items() if v["proc"].poll() is None}
            failed = {d: v["proc"].returncode for d, v in devices.items() if v["proc"].returncode}
            assert not failed, f"devices exited with errors: {failed}: " + " | ".join(
                devices[d]["log"].read_text()[-600:] for d in failed
            )
            if not running:
                break
            time.sleep(rng.uniform(0.3, 0.8))
            rounds += 1
            if time.monotonic() >= next_central_kill:
                central.kill()
                faults["central_kills"] += 1
                time.sleep(rng.uniform(0.1, 0.6))
                central.start()
                next_central_kill = time.monotonic() + rng.uniform(1.0, 2.0)
            elif rounds % 2 == 0 and running:
                victim = rng.choice(sorted(running))
                running[victim]["proc"].send_signal(signal.SIGKILL)
                running[victim]["proc"].wait()
                faults["device_kills"] += 1
                devices[victim]["proc"] = _start_device(devices[victim]["args"], devices[victim]["log"])
        else:
            logs = {d: v["log"].read_text()[-500:] for d, v in devices.items()}
            pytest.fail(f"devices did not finish within {DEADLINE_S}s: {logs}")

        proxy.enabled = False
        listed = {d["id"]: d for d in central.call("GET", "/v1/devices")}
        held = {d: (listed[d]["results"], listed[d]["acked_through"]) for d in devices}
        assert held == {d: (N, N) for d in devices}
        counts = _count_rows(central, database_url)
        assert counts == {d: (N, N, 1, N) for d in devices}  # rows, distinct seqs, min, max

        faults.update(proxy.counts)
        report = {
            "backend": backend, "devices": DEVICES, "results_per_device": N, "model": mode, **faults
        }  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"central_e2e_faults_{backend}.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report))
        assert faults["central_kills"] >= 2 and faults["device_kills"] >= 2
        assert proxy.counts["drop"] >= 3 and proxy.counts["reset"] >= 3
        assert proxy.counts["stall"] >= 1
    finally:
        for entry in devices.values():
            if entry["proc"].poll() is None:
                entry["proc"].send_signal(signal.SIGKILL)
                entry["proc"].wait()
        proxy.close()
        central.kill()


def _count_rows(central: CentralProcess, database_url: str) -> dict[str, tuple[int, int, int, int]]:
    from sqlalchemy import create_engine, func, select

    from central.models import Result

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    Result.device_id,
                    func.count(),
                    func.count(func.distinct(Result.seq)),
                    func.min(Result.seq),
                    func.max(Result.seq),
                ).group_by(Result.device_id)
            ).all()
    finally:
        engine.dispose()
    return {d: (int(n), int(k), int(lo), int(hi)) for d, n, k, lo, hi in rows}
