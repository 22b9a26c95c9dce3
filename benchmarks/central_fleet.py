"""Central under a simulated fleet: many devices syncing batches and drift through the real HTTP stack.

Starts ``edgeseg-central serve --workers N`` on loopback for each back end (a fresh SQLite file;
a fresh PostgreSQL database, dropped afterwards), registers a signed model with a drift
reference and ``--devices`` devices (each its own store), then runs every device as a coroutine
with its own keep-alive connection: it sends ``--batches`` gzip batches of ``--batch-size``
results back to back, posts a drift snapshot every ``--drift-every`` batches (a tenth of the
devices drifted), and now and then sends its previous batch again, as a device does when an ack
was lost. A batch that fails (connection error, timeout, 5xx) is retried up to 3 times, like the
sync client. The run is bounded (``--deadline-s``; loopback only) and stops by itself.

At the end it reads the database: every result sent must be stored exactly once (count, distinct
``(device_id, epoch, seq)``, and each row's ``customer_ref`` equal to the one sent), the
exactly-once ledger must hold one key per result, and each device's watermark must equal what
it sent. Prints one JSON object: results/s, batch latency p50/p99, errors, retries, database
bytes per million results, lost and duplicated results::

    python benchmarks/central_fleet.py                  # quick: 1,000 devices x 3 batches x 100
    python benchmarks/central_fleet.py --full           # 1,000 devices x 10 batches x 100
    python benchmarks/central_fleet.py --backends postgresql --devices 200 --batches 10

The load client is one asyncio process (a raw HTTP/1.1 writer, pre-built bodies) so it leaves
the cores to central; on a 2-core machine it still takes part of one.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: benchmarks/ is sys.path[0]
    sys.path.insert(0, str(REPO))

from benchmarks.central_ingest import (  # noqa: E402
    CLASSES,
    _call,
    _free_port,
    _percentile,
    _signed_artifact,
    _start_central,
    run_backends,
)

SIZES = {"smoke": (40, 3, 20), "quick": (1000, 3, 100), "full": (1000, 10, 100)}
DRIFT_BINS = 4  # 3 bins of "spend", then missing
MAX_ATTEMPTS = 4


@dataclass
class Device:
    id: str
    token: str
    drifted: bool
    batches: list[bytes] = field(default_factory=list)
    sent: int = 0  # results in its batches


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    replays: int = 0
    acked: int = 0
    stored: int = 0
    duplicates: int = 0
    drift_posts: int = 0
    drift_flagged: int = 0
    bad_acks: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _reference() -> dict[str, Any]:
    from edge_runtime.artifact import NumberReference

    return {"spend": NumberReference(bin_edges=(0.0, 10.0, 50.0, 373.0), proportions=(0.3, 0.4, 0.2, 0.1))}


def customer_ref(device_id: str, seq: int) -> str:
    return hashlib.sha256(f"{device_id}/{seq}".encode()).hexdigest()[:32]


def _build_batches(device: Device, model_version: str, epoch: str, batches: int, size: int, rng: random.Random) -> None:
    seq = 0
    for _ in range(batches):
        results = []
        for _ in range(size):
            seq += 1
            segment = CLASSES[rng.randrange(3)]
            top = round(rng.uniform(0.4, 0.9), 4)
            rest = round((1 - top) / 2, 4)
            results.append(
                {
                    "seq": seq,
                    "customer_ref": customer_ref(device.id, seq),
                    "segment": segment,
                    "probabilities": {c: top if c == segment else rest for c in CLASSES},
                    "model_version": model_version,
                    "classified_at": f"2026-11-{1 + seq % 28:02d}T{seq % 24:02d}:00:00Z",
                }
            )
        body = {"device_id": device.id, "epoch": epoch, "results": results, "backlog": 0}
        device.batches.append(gzip.compress(json.dumps(body, separators=(",", ":")).encode(), 5))
    device.sent = seq


# uvicorn closes a keep-alive connection idle for 5 s; a device reconnects after a longer pause.
IDLE_RECONNECT_S = 4.0


class Connection:
    """One keep-alive HTTP/1.1 connection: the cheapest client a single process can run."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def request(self, path: str, body: bytes, token: str, gzipped: bool) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.used > IDLE_RECONNECT_S:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        encoding = "Content-Encoding: gzip\r\n" if gzipped else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{encoding}Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        self.used = time.monotonic()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _post(conn: Connection, path: str, body: bytes, token: str, gzipped: bool, tally: Tally, timeout: float):  # type: ignore[no-untyped-def]
    """POST with the sync client's retries: (status, payload) of the last attempt, or None."""
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            tally.retries += 1
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * random.random())
        try:
            status, payload = await asyncio.wait_for(conn.request(path, body, token, gzipped), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            tally.error(type(exc).__name__)
            conn.close()
            continue
        if status >= 500:
            tally.error(f"http_{status}")
            continue
        return status, payload
    return None


@dataclass(frozen=True)
class Phase:
    """Batches ``first``..``last-1`` of every device; paced: one every ``period`` s from ``start``
    (monotonic) at a per-device offset, else back to back (saturation)."""

    first: int
    last: int
    stop: float
    start: float = 0.0
    period: float = 0.0


async def _run_device(
    device: Device, port: int, model_version: str, args: argparse.Namespace, tally: Tally, phase: Phase
) -> None:
    conn = Connection(port)
    rng = random.Random(f"{device.id}/{phase.first}")
    offset = rng.uniform(0, phase.period)
    counts = [70, 10, 10, 10] if device.drifted else [30, 40, 20, 10]  # PSI 0.82 / 0
    try:
        for k in range(phase.first, phase.last):
            body = device.batches[k]
            if phase.period:
                await asyncio.sleep(
                    max(0.0, phase.start + offset + (k - phase.first) * phase.period - time.monotonic())
                )
            if time.monotonic() > phase.stop:
                tally.error("deadline")
                return
            started = time.perf_counter()
            answer = await _post(conn, "/v1/results:batch", body, device.token, True, tally, args.timeout_s)
            if answer is None or answer[0] != 200:
                tally.error("batch_failed" if answer is None else f"http_{answer[0]}")
                return
            tally.latencies.append(time.perf_counter() - started)
            ack = json.loads(answer[1])
            tally.stored += ack["stored"]
            tally.duplicates += ack["duplicates"]
            tally.acked += ack["stored"] + ack["duplicates"]
            if ack["acked_through"] != args.batch_size * (k + 1):
                tally.bad_acks += 1
            if k and rng.random() < args.replay_fraction:  # the ack of the previous batch was "lost"
                tally.replays += 1
                again = await _post(
                    conn, "/v1/results:batch", device.batches[k - 1], device.token, True, tally, args.timeout_s
                )
                if again is None or again[0] != 200 or json.loads(again[1])["stored"] != 0:
                    tally.error("replay_not_duplicate")
                else:
                    tally.duplicates += json.loads(again[1])["duplicates"]
            if args.drift_every and (k + 1) % args.drift_every == 0:
                histograms = {"spend": [c * args.batch_size // 100 for c in counts]}
                drift = json.dumps({"device_id": device.id, "model_version": model_version, "histograms": histograms})
                answer = await _post(conn, "/v1/drift", drift.encode(), device.token, False, tally, args.timeout_s)
                if answer is None or answer[0] // 100 != 2:
                    tally.error("drift_failed" if answer is None else f"drift_http_{answer[0]}")
                else:
                    tally.drift_posts += 1
                    tally.drift_flagged += bool(json.loads(answer[1]).get("flagged"))
    finally:
        conn.close()


def _start_serve(database_url: str, public_key: Path, port: int, args: argparse.Namespace, log: Path) -> Any:
    """``edgeseg-central serve --workers N`` (the real command) with its own metrics folder."""
    command = [sys.executable, "-m", "central.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(args.workers), "--log-level", "warning"]  # fmt: skip
    env = {"EDGESEG_DB_POOL_SIZE": str(args.pool_size), "PROMETHEUS_MULTIPROC_DIR": ""}
    return _start_central(database_url, public_key, port, args.workers, log, command, env)


def _verify(database_url: str, devices: list[Device]) -> dict[str, Any]:
    """Read the database: every result sent stored exactly once, keys and watermarks agree."""
    from sqlalchemy import text

    from central.core.db import make_engine

    engine = make_engine(database_url)
    expected = {d.id: d.sent for d in devices}
    sent = sum(expected.values())
    try:
        with engine.connect() as conn:
            rows, distinct = conn.execute(
                text("SELECT count(*), count(DISTINCT device_id || '/' || epoch || '/' || seq) FROM results")
            ).one()
            keys = conn.execute(text("SELECT count(*) FROM result_keys")).scalar_one()
            wrong_ref = missing = 0
            per_device: dict[str, set[int]] = {}
            for device_id, seq, ref in conn.execute(text("SELECT device_id, seq, customer_ref FROM results")):
                per_device.setdefault(device_id, set()).add(seq)
                wrong_ref += ref != customer_ref(device_id, seq)
            for device_id, n in expected.items():
                held = per_device.get(device_id, set())
                missing += len(set(range(1, n + 1)) - held)
            watermarks: dict[str, int] = dict(conn.execute(text("SELECT id, acked_through FROM devices")).all())
            size = _database_bytes(conn, database_url)
    finally:
        engine.dispose()
    return {
        "sent": sent,
        "rows": int(rows),
        "lost": missing,
        "duplicated": int(rows) - int(distinct),
        "unexpected": int(distinct) + missing - sent,
        "wrong_content": wrong_ref,
        "keys": int(keys),
        "watermark_mismatches": sum(watermarks.get(d) != n for d, n in expected.items()),
        "database_bytes": size,
    }


def _database_bytes(conn: Any, database_url: str) -> int:
    """Bytes the results take: PostgreSQL partitions + ledger (indexes included); SQLite file + WAL."""
    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        query = (
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relkind = 'r' AND c.relnamespace = to_regnamespace(current_schema()) "
            "AND (c.relname LIKE 'results_y%' OR c.relname = 'result_keys')"
        )
        return int(conn.execute(text(query)).scalar_one())
    import sqlite3

    path = Path(database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as raw:  # a checkpoint needs a connection outside any transaction
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def bench_backend(name: str, database_url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    files, public_key, model_version = _signed_artifact(folder, _reference())
    port = _free_port()
    process = _start_serve(database_url, public_key, port, args, folder / f"{name}.log")
    rng = random.Random(args.seed)
    try:
        url = f"http://127.0.0.1:{port}"
        _call(url, "POST", "/v1/models", {"files": files, "rollout_to": "all"})
        devices = []
        for i in range(args.devices):
            made = _call(url, "POST", "/v1/devices", {"store": f"store-{i:05d}"})
            device = Device(made["id"], made["token"], drifted=i % 10 == 0)
            batches = args.batches + args.paced_batches
            _build_batches(device, model_version, secrets.token_hex(16), batches, args.batch_size, rng)
            devices.append(device)
        tally, paced = Tally(), Tally()

        async def fleet(tally: Tally, phase: Phase) -> float:
            started = time.perf_counter()
            await asyncio.gather(*(_run_device(d, port, model_version, args, tally, phase) for d in devices))
            return time.perf_counter() - started

        stop = time.monotonic() + args.deadline_s
        elapsed = asyncio.run(fleet(tally, Phase(0, args.batches, stop)))
        rate = tally.stored / elapsed if elapsed else 0.0
        # Paced: the fleet offers args.paced_load of the measured saturation rate, each device one
        # batch per period; the latency a device sees when central is not the bottleneck.
        period = args.devices * args.batch_size / max(rate * args.paced_load, 1.0)
        paced_phase = Phase(args.batches, args.batches + args.paced_batches, stop, time.monotonic(), period)
        paced_elapsed = asyncio.run(fleet(paced, paced_phase)) if args.paced_batches else 0.0
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    check = _verify(database_url, devices)
    return {
        "devices": args.devices,
        "results_sent": check["sent"],
        "saturation": _phase_report(tally, elapsed),
        "paced": {
            "offered_results_per_s": round(args.devices * args.batch_size / period),
            "batch_period_s": round(period, 2),
            **_phase_report(paced, paced_elapsed),
        },
        # bytes per result = MB (10^6 bytes) per million results
        "database_mb_per_million_results": round(check["database_bytes"] / max(check["rows"], 1), 1),
        "check": check,
        "exactly_once": check["lost"] == check["duplicated"] == check["unexpected"] == check["wrong_content"] == 0
        and check["keys"] == check["sent"]
        and check["watermark_mismatches"] == 0,
    }


def _phase_report(tally: Tally, elapsed: float) -> dict[str, Any]:
    lat = tally.latencies or [0.0]
    return {
        "seconds": round(elapsed, 2),
        "results_per_s": round(tally.stored / elapsed) if elapsed else 0,
        "batches": len(tally.latencies),
        "batch_latency_ms_p50": round(1e3 * statistics.median(lat), 1),
        "batch_latency_ms_p99": round(1e3 * _percentile(lat, 0.99), 1),
        "batch_latency_ms_max": round(1e3 * max(lat), 1),
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "retries": tally.retries,
        "replayed_batches": tally.replays,
        "acked_stored": tally.stored,
        "acked_duplicates": tally.duplicates,
        "bad_acks": tally.bad_acks,
        "drift_posts": tally.drift_posts,
        "drift_flagged": tally.drift_flagged,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help=f"{SIZES['smoke']} devices x batches x results (the test)")
    mode.add_argument("--quick", action="store_true", help=f"{SIZES['quick']} (the default)")
    mode.add_argument("--full", action="store_true", help=f"{SIZES['full']} (make bench FULL=1)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--batches", type=int, default=None, help="batches per device")
    parser.add_argument("--batch-size", type=int, default=None, help="results per batch")
    parser.add_argument("--paced-batches", type=int, default=2, help="then this many per device, paced")
    parser.add_argument("--paced-load", type=float, default=0.5, help="paced offered load / saturation rate")
    parser.add_argument("--workers", type=int, default=2, help="edgeseg-central serve --workers")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=5,
        help="EDGESEG_DB_POOL_SIZE per worker (central's default; docs/SCALE.md compares 1, 2 and 5)",
    )
    parser.add_argument("--drift-every", type=int, default=2, help="a drift snapshot every N batches (0: none)")
    parser.add_argument("--replay-fraction", type=float, default=0.05, help="batches sent again (a lost ack)")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per request, then retried")
    parser.add_argument("--deadline-s", type=float, default=600.0, help="the whole fleet run, per back end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    size = SIZES["full" if args.full else "smoke" if args.smoke else "quick"]
    args.devices = args.devices or size[0]
    args.batches = args.batches or size[1]
    args.batch_size = args.batch_size or size[2]
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "central_fleet",
        "devices": args.devices,
        "batches_per_device": args.batches,
        "batch_size": args.batch_size,
        "uvicorn_workers": args.workers,
        "pool_size_per_worker": args.pool_size,
        "cpus": os.cpu_count(),
        # The machine may be shared: a load average above the core count lowers every figure.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeseg-fleet-") as tmp:
        folder = Path(tmp)
        try:
            out["backends"] = run_backends(
                args.backends, args.pg_url, folder, lambda name, url: bench_backend(name, url, args, folder)
            )
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> int:
    out = run(parse_args(argv))
    print(json.dumps(out, indent=2))
    ok = all(b.get("exactly_once", True) for b in out["backends"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
