"""The fleet fault soak (issue 10): devices in separate processes classify and sync through a
faulty network to a central that keeps being SIGKILLed, while the test SIGKILLs devices,
deletes one device's outbox, corrupts another's, and SIGKILLs model updates at every step.

At the end every result a device classified is at central exactly once, or still unsynced in
an outbox the device moved aside and reported (``outbox_quarantined``), or was in the outbox
file the test deleted (counted: an operator's ``rm`` destroys what was not yet sent); nothing
at central is unknown to its device, and no classification is stored twice.

Real pieces only: uvicorn serving ``central.main:create_app`` on loopback (SQLite file or
PostgreSQL), each device a Python process with the real Runtime/Outbox/SyncClient
(``central_e2e_device.py``), the real ModelUpdater, and a fault-injecting TCP proxy
(``central_faultproxy.py``). Loopback only; it stops by itself (hard deadline) and prints and
writes (test-artifacts/central_e2e_faults_<backend>.json) the fault counts and totals.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from central_faultproxy import FaultProxy
from central_helpers import ADMIN_TOKEN, CentralProcess, free_port, upload_body

pytestmark = pytest.mark.slow

DEVICES = 4
N = 500  # results per outbox epoch
DEADLINE_S = 80.0
MIN_FAULTS = 100
DEVICE_SCRIPT = Path(__file__).with_name("central_e2e_device.py")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Faults the soak injects (the rest of the proxy's counters are their consequences).
INJECTED = (
    "central_kills", "device_kills", "outbox_deleted", "outbox_corrupted", "update_kills",
    "drop", "reset", "stall", "delay",
)  # fmt: skip


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, str(DEVICE_SCRIPT), *args], stdout=handle, stderr=subprocess.STDOUT)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def _models(request):  # type: ignore[no-untyped-def]
    """(older artifact, newer artifact or None, trusted key, mode): the factory's real models
    when they can be built here, else the opaque test artifact with synthetic results."""
    try:
        artifacts = [request.getfixturevalue("small_artifact"), request.getfixturevalue("other_artifact")]
        public_key = request.getfixturevalue("signing_public_key")
    except pytest.skip.Exception:
        key = request.getfixturevalue("central_signing_key")[1]
        return request.getfixturevalue("test_artifact"), None, key, "synthetic"
    older, newer = sorted(artifacts, key=lambda a: json.loads((a / "manifest.json").read_text())["version"])
    same = _version(older) == _version(newer)
    return older, None if same else newer, public_key, "runtime"


def _version(artifact: Path) -> str:
    return json.loads((artifact / "manifest.json").read_text())["model_version"]


def read_outbox(path: Path) -> tuple[str, dict[int, tuple[str | None, bool]]]:
    """(epoch, {seq: (customer_ref, synced)}) of an outbox file whose process is not running."""
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        through = int(meta.get("synced_through", 0))
        above = {s for (s,) in db.execute("SELECT seq FROM synced_above")}
        rows = {
            seq: (ref, seq <= through or seq in above)
            for seq, ref in db.execute("SELECT seq, customer_ref FROM results")
        }
    finally:
        db.close()
    return str(meta["epoch"]), rows


def _offline_spell(device: dict[str, Any], seconds: float = 2.0) -> None:
    """Kill the device, let it classify a while with central unreachable (so its outbox holds
    unsynced results), then kill it again: what an outbox looks like when a disk fails."""
    _kill(device["proc"])
    args = list(device["args"])
    args[args.index("--url") + 1] = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    args[args.index("--n") + 1] = str(10 * N)  # classify even if this epoch was complete
    proc = _start(args, device["log"])
    started = time.monotonic()
    # At least ``seconds`` with its outbox open (a loaded machine may take a while to start it).
    while time.monotonic() - started < 15 and not (device["outbox"].exists() and time.monotonic() - started > seconds):
        time.sleep(0.1)
    _kill(proc)


def _remove_outbox(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _corrupt_outbox(path: Path, rng: random.Random) -> None:
    """Random bytes over the first pages (what a bad disk sector or a botched copy leaves)."""
    with open(path, "r+b") as handle:
        handle.write(rng.randbytes(8192))


class UpdateFaults(threading.Thread):
    """A device's model updates, each SIGKILLed at one step after the other until one runs
    through; after each kill the models folder must hold the old model or the new one."""

    def __init__(
        self,
        central: CentralProcess,
        device: dict[str, str],
        public_key: Path,
        folder: Path,
        versions: tuple[str, str | None],
    ) -> None:
        super().__init__(daemon=True)
        self.central, self.device, self.public_key, self.folder = central, device, public_key, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.first, self.second = versions
        self.kills = 0
        self.installed: list[str] = []
        self.errors: list[str] = []
        self.phase_done = threading.Event()  # the first version is installed: roll out the second
        self.rolled_out = threading.Event()

    def _run_once(self, kill_at: int) -> int:
        args = [
            "--mode", "update", "--url", self.central.url, "--device-id", self.device["id"],
            f"--token={self.device['token']}", "--public-key", str(self.public_key),
            "--models-dir", str(self.folder / "models"), "--kill-at-step", str(kill_at),
        ]  # fmt: skip
        proc = _start(args, self.folder / "update.log")
        try:
            return proc.wait(timeout=60)
        finally:
            _kill(proc)

    def _current(self) -> str | None:
        from edge_runtime.signing import verify_artifact

        link = self.folder / "models" / "current"
        if not link.exists():
            return None
        return verify_artifact(link.resolve(), self.public_key).model_version  # complete and signed, or raises

    def install(self, expected: str, before: str | None) -> None:
        kill_at, attempts = 1, 0
        while attempts < 40:
            attempts += 1
            code = self._run_once(kill_at)
            current = self._current()
            if current not in (before, expected):
                self.errors.append(f"after a kill at step {kill_at} current is {current!r}")
                return
            if code == -signal.SIGKILL:
                self.kills += 1
                kill_at += 1
            elif code == 75:  # central was being killed: the same step again
                time.sleep(0.3)
            elif code == 0 and current == expected:
                self.installed.append(expected)
                return
            else:
                self.errors.append(f"update exited {code} with current {current!r}")
                return
        self.errors.append(f"{expected} not installed after {attempts} attempts")

    def run(self) -> None:
        try:
            self.install(self.first, None)
            self.phase_done.set()
            if self.second is not None:
                self.rolled_out.wait(timeout=30)
                self.install(self.second, self.first)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.phase_done.set()


def test_fleet_soak_every_result_at_central_once_or_held(database_url, tmp_path, request) -> None:
    backend = request.node.callspec.params["database_url"]
    older, newer, public_key, mode = _models(request)
    rng = random.Random(20261130)
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
    proxy = FaultProxy(central.port, seed=7, p_drop=0.12, p_reset=0.1, p_stall=0.04, p_delay=0.06, stall_s=2.5)
    devices: dict[str, dict[str, Any]] = {}
    faults: Counter[str] = Counter()
    snapshots: dict[str, list[tuple[str, str, dict[int, tuple[str | None, bool]]]]] = {}
    updates = None
    started = time.monotonic()
    try:
        central.call("POST", "/v1/models", upload_body(older))
        model_args = [] if mode == "synthetic" else ["--artifact", str(older), "--public-key", str(public_key)]
        for i in range(DEVICES):
            created = central.call("POST", "/v1/devices", {"store": f"store-{i % 2}"})
            outbox = tmp_path / f"{created['id']}.db"
            args = [
                "--url", f"http://127.0.0.1:{proxy.port}", "--device-id", created["id"],
                f"--token={created['token']}", "--outbox", str(outbox), "--n", str(N),
                "--model-version", _version(older), "--seed", str(i), *model_args,
            ]  # fmt: skip
            log = tmp_path / f"{created['id']}.log"
            devices[created["id"]] = {"args": args, "log": log, "outbox": outbox, "proc": _start(args, log)}
            snapshots[created["id"]] = []
        fleet = sorted(devices)
        if mode == "runtime":
            updater_device = central.call("POST", "/v1/devices", {"store": "store-0"})
            versions = (_version(older), None if newer is None else _version(newer))
            updates = UpdateFaults(central, updater_device, public_key, tmp_path / "updater", versions)
            updates.start()

        deadline = started + DEADLINE_S
        next_central_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        delete_at, corrupt_at = started + 8.0, started + 14.0
        rounds = 0
        while time.monotonic() < deadline:
            failed = {d: v["proc"].returncode for d, v in devices.items() if v["proc"].poll()}
            assert not failed, f"devices exited with errors: {failed}: " + " | ".join(
                devices[d]["log"].read_text()[-800:] for d in failed
            )
            running = sorted(d for d, v in devices.items() if v["proc"].poll() is None)
            if updates is not None and updates.phase_done.is_set() and not updates.rolled_out.is_set():
                if newer is not None:
                    central.call("POST", "/v1/models", upload_body(newer, "store-0"))
                updates.rolled_out.set()
            updating = updates is not None and updates.is_alive()
            pending = delete_at is not None or corrupt_at is not None
            if not running and not updating and not pending:
                break
            time.sleep(rng.uniform(0.25, 0.6))
            rounds += 1
            now = time.monotonic()
            if delete_at is not None and now >= delete_at:
                victim = devices[fleet[1]]
                _offline_spell(victim)
                epoch, rows = read_outbox(victim["outbox"])
                snapshots[fleet[1]].append(("deleted", epoch, rows))
                _remove_outbox(victim["outbox"])
                faults["outbox_deleted"] += 1
                victim["proc"] = _start(victim["args"], victim["log"])
                delete_at = None
            elif corrupt_at is not None and now >= corrupt_at:
                victim = devices[fleet[2]]
                _offline_spell(victim)
                epoch, rows = read_outbox(victim["outbox"])
                snapshots[fleet[2]].append(("quarantined", epoch, rows))
                _corrupt_outbox(victim["outbox"], rng)
                faults["outbox_corrupted"] += 1
                victim["proc"] = _start(victim["args"], victim["log"])
                corrupt_at = None
            elif now >= next_central_kill:
                central.kill()
                faults["central_kills"] += 1
                time.sleep(rng.uniform(0.1, 0.5))
                central.start()
                next_central_kill = time.monotonic() + rng.uniform(1.0, 2.5)
            elif rounds % 2 == 0 and running:
                victim = devices[rng.choice(running)]
                _kill(victim["proc"])
                faults["device_kills"] += 1
                victim["proc"] = _start(victim["args"], victim["log"])
        else:
            logs = {d: v["log"].read_text()[-600:] for d, v in devices.items()}
            pytest.fail(f"the soak did not finish within {DEADLINE_S}s: {logs}")

        proxy.enabled = False
        if updates is not None:
            updates.join(timeout=5)
            assert updates.errors == [], updates.errors
            faults["update_kills"] = updates.kills
            expected_installs = [updates.first] + ([] if updates.second is None else [updates.second])
            assert updates.installed == expected_installs
        faults.update({k: v for k, v in proxy.counts.items()})
        totals = _account(central, database_url, devices, snapshots)
        report = {
            "backend": backend, "devices": DEVICES, "results_per_epoch": N, "model": mode,
            "seconds": round(time.monotonic() - started, 1),
            "faults": {k: faults[k] for k in INJECTED}, "injected": sum(faults[k] for k in INJECTED),
            "consequences": {k: v for k, v in faults.items() if k not in INJECTED}, **totals,
        }  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"central_e2e_faults_{backend}.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report))
        assert report["injected"] >= MIN_FAULTS, report
        assert faults["central_kills"] >= 2 and faults["device_kills"] >= 2, report
        assert faults["outbox_deleted"] == 1 and faults["outbox_corrupted"] == 1, report
        assert faults["drop"] >= 3 and faults["reset"] >= 3 and faults["stall"] >= 1, report
        if mode == "runtime":
            assert faults["update_kills"] >= 3, report
    finally:
        for entry in devices.values():
            _kill(entry["proc"])
        proxy.close()
        central.kill()


def _account(
    central: CentralProcess,
    database_url: str,
    devices: dict[str, dict[str, Any]],
    snapshots: dict[str, list[tuple[str, str, dict[int, tuple[str | None, bool]]]]],
) -> dict[str, int]:
    """Check every classified result against central; return the totals."""
    stored = _central_rows(database_url)
    totals = Counter[str]()
    for device_id, entry in devices.items():
        epochs: dict[str, dict[int, tuple[str | None, bool]]] = {}
        fates: dict[str, str] = {}
        for fate, epoch, rows in snapshots[device_id]:
            epochs[epoch], fates[epoch] = rows, fate
        live_epoch, live_rows = read_outbox(entry["outbox"])
        assert live_epoch not in epochs, f"{device_id}: a new outbox reused epoch {live_epoch}"
        epochs[live_epoch], fates[live_epoch] = live_rows, "live"
        at_central = stored.get(device_id, {})
        assert set(at_central) <= set(epochs), (
            f"{device_id}: central holds unknown epochs {set(at_central) - set(epochs)}"
        )
        refs = [ref for rows in at_central.values() for ref in rows.values()]
        assert len(refs) == len(set(refs)), f"{device_id}: a classification is stored twice at central"
        for epoch, rows in epochs.items():
            held = at_central.get(epoch, {})
            wrong = {s: r for s, r in held.items() if s not in rows or rows[s][0] != r}
            assert not wrong, f"{device_id} epoch {epoch}: central rows the device never classified: {wrong}"
            synced_missing = [s for s, (_, synced) in rows.items() if synced and s not in held]
            assert not synced_missing, f"{device_id} epoch {epoch}: marked synced but not at central: {synced_missing}"
            unsent = [s for s in rows if s not in held]
            totals["classified"] += len(rows)
            totals["at_central_once"] += len(held)
            if fates[epoch] == "live":
                assert not unsent, f"{device_id}: live outbox still holds unsynced seqs {unsent[:10]}"
            elif fates[epoch] == "quarantined":
                totals["unsynced_in_quarantined_outbox"] += len(unsent)
            else:
                totals["unsynced_in_deleted_outbox"] += len(unsent)
        totals["epochs"] += len(epochs)
        if "quarantined" in fates.values():
            folder = entry["outbox"].parent
            kept = list(folder.glob(entry["outbox"].name + ".corrupt-*"))
            assert kept, f"{device_id}: the corrupt outbox was not kept"
            events = central.call("GET", f"/v1/devices/{device_id}/events")
            reported = [e for e in events if e["kind"] == "outbox_quarantined"]
            assert [e["epoch_new"] for e in reported] == [live_epoch], events
            totals["quarantine_reported"] += len(reported)
    totals["stored_at_central"] = sum(len(rows) for epochs in stored.values() for rows in epochs.values())
    assert totals["stored_at_central"] == totals["at_central_once"]
    assert totals["classified"] == (
        totals["at_central_once"] + totals["unsynced_in_quarantined_outbox"] + totals["unsynced_in_deleted_outbox"]
    )
    return dict(totals)


def _central_rows(database_url: str) -> dict[str, dict[str, dict[int, str | None]]]:
    """device -> epoch -> seq -> customer_ref, read straight from central's database."""
    from sqlalchemy import create_engine, select

    from central.models import Result

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Result.device_id, Result.epoch, Result.seq, Result.customer_ref)).all()
    finally:
        engine.dispose()
    out: dict[str, dict[str, dict[int, str | None]]] = {}
    for device_id, epoch, seq, ref in rows:
        out.setdefault(device_id, {}).setdefault(epoch, {})[int(seq)] = ref
    return out
