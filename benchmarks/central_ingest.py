"""Central ingest throughput: results/s through ``POST /v1/results:batch``, SQLite and PostgreSQL.

Starts central under uvicorn on loopback for each back end (a fresh SQLite file; a fresh
PostgreSQL database, dropped afterwards), registers a signed test model, then several client
threads send pre-built gzip batches over keep-alive connections, one device per thread, the
way store devices would. Prints one JSON object::

    python benchmarks/central_ingest.py                       # both back ends
    python benchmarks/central_ingest.py --backends sqlite --results 50000 --batch-size 500

Measured: first delivery (every row new) and a full replay (every row a duplicate, what a
device's retry after a lost ack costs), results/s and per-batch latency p50/p99.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "bench-admin-token-" + secrets.token_hex(8)
CLASSES = ["high", "mid", "low"]


def _signed_artifact(folder: Path, reference: Any = None) -> tuple[dict[str, str], Path, str]:
    """A synthetic signed artifact with a valid manifest (central checks the manifest, the
    signature and the hash, not the graph), signed with a throw-away key. ``reference``: the
    manifest's drift reference (typed parts), none by default."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_runtime.artifact import (
        FORMAT_VERSION,
        MANIFEST_FILE,
        MODEL_FILE,
        SIGNATURE_FILE,
        InputLayout,
        InputSpec,
        Manifest,
        Target,
        manifest_bytes,
    )
    from factory.signing import sign_manifest

    key = Ed25519PrivateKey.generate()
    public = folder / "bench.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    model = b"benchmark model bytes"
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        name="bench",
        version="20261127T000000Z",
        model_version="bench/20261127T000000Z",
        input_layout=InputLayout(num=("spend",), cat=(), missing_token="__missing__"),
        inputs=(InputSpec(name="spend", type="number", required=False),),
        target=Target(name="segment", classes=tuple(CLASSES), label_rule=None),
        reference=reference or {},
        golden_samples=(),
        onnx_sha256=hashlib.sha256(model).hexdigest(),
    )
    data = manifest_bytes(manifest)
    files = {
        MODEL_FILE: base64.b64encode(model).decode(),
        MANIFEST_FILE: base64.b64encode(data).decode(),
        SIGNATURE_FILE: base64.b64encode(sign_manifest(data, key)).decode(),
    }
    return files, public, manifest.model_version


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _call(url: str, method: str, path: str, body: Any, token: str = ADMIN_TOKEN) -> Any:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _start_central(  # type: ignore[no-untyped-def]
    database_url: str,
    public_key: Path,
    port: int,
    workers: int,
    log: Path,
    command: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
):
    """Start central (``command``, default uvicorn on the app factory) and wait for /healthz."""
    env = {
        **os.environ,
        "EDGESEG_DATABASE_URL": database_url,
        "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
        "EDGESEG_ENV": "test",
        "EDGESEG_PUBLIC_KEY_PATH": str(public_key),
        **(extra_env or {}),
    }
    command = command or [sys.executable, "-m", "uvicorn", "--factory", "central.main:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--workers", str(workers)]  # fmt: skip
    with open(log, "ab") as handle:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"central exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("central did not start")


def _batches(device_id: str, model_version: str, n: int, batch_size: int) -> list[bytes]:
    out = []
    for start in range(1, n + 1, batch_size):
        results = [
            {
                "seq": seq,
                "customer_ref": hashlib.sha256(f"{device_id}{seq}".encode()).hexdigest()[:32],
                "segment": CLASSES[seq % 3],
                # central refuses a segment that is not the most probable class
                "probabilities": {c: 0.61 if c == CLASSES[seq % 3] else 0.195 for c in CLASSES},
                "model_version": model_version,
                "classified_at": "2026-11-27T10:00:00.000Z",
            }
            for seq in range(start, min(start + batch_size, n + 1))
        ]
        body = {"device_id": device_id, "results": results}
        out.append(gzip.compress(json.dumps(body, separators=(",", ":")).encode(), 5))
    return out


def _send_all(port: int, jobs: list[tuple[str, list[bytes]]]) -> tuple[float, list[float], int]:
    """Each (token, batches) job on its own thread and keep-alive connection."""
    latencies: list[float] = []
    acked = [0]
    lock = threading.Lock()
    errors: list[str] = []

    def worker(token: str, batches: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        mine = []
        stored = 0
        for body in batches:
            t0 = time.perf_counter()
            conn.request("POST", "/v1/results:batch", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200:
                errors.append(f"{response.status}: {payload[:200]!r}")
                return
            ack = json.loads(payload)
            stored += ack["stored"] + ack["duplicates"]
        conn.close()
        with lock:
            latencies.extend(mine)
            acked[0] += stored

    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"ingest failed: {errors[:3]}")
    return elapsed, latencies, acked[0]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_backend(name: str, database_url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    files, public_key, model_version = _signed_artifact(folder)
    port = _free_port()
    process = _start_central(database_url, public_key, port, args.workers, folder / f"{name}.log")
    try:
        url = f"http://127.0.0.1:{port}"
        _call(url, "POST", "/v1/models", {"files": files, "rollout_to": "all"})
        per_device = args.results // args.devices
        jobs = []
        for i in range(args.devices):
            device = _call(url, "POST", "/v1/devices", {"store": f"store-{i}"})
            jobs.append((device["token"], _batches(device["id"], model_version, per_device, args.batch_size)))
        report: dict[str, Any] = {"results": per_device * args.devices}
        for phase in ("first_delivery", "replay"):
            elapsed, latencies, acked = _send_all(port, jobs)
            assert acked == per_device * args.devices, (acked, per_device * args.devices)
            report[phase] = {
                "results_per_s": round(acked / elapsed),
                "seconds": round(elapsed, 3),
                "batch_latency_ms_p50": round(1e3 * statistics.median(latencies), 2),
                "batch_latency_ms_p99": round(1e3 * _percentile(latencies, 0.99), 2),
            }
        listed = _call(url, "GET", "/v1/devices", None)
        assert all(d["acked_through"] == per_device for d in listed), listed
        return report
    finally:
        process.kill()
        process.wait()


def _postgres_database(admin_url: str) -> tuple[str, Any]:
    import psycopg

    name = f"edgeseg_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    admin = psycopg.connect(conninfo, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"{base}/{name}", drop


def run_backends(backends: str, pg_url: str, folder: Path, bench: Any) -> dict[str, Any]:
    """``bench(name, database_url)`` on each of ``backends`` ("sqlite,postgresql").

    PostgreSQL gets a fresh database that is dropped afterwards; an unreachable server is
    reported as skipped, so the SQLite figures still come out. Shared by the ingest and the
    fleet benchmarks.
    """
    results: dict[str, Any] = {}
    for backend in backends.split(","):
        if backend == "sqlite":
            results["sqlite"] = bench("sqlite", f"sqlite:///{folder / 'central.db'}")
        elif backend == "postgresql":
            try:
                url, drop = _postgres_database(pg_url)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                results["postgresql"] = {"skipped": f"PostgreSQL not reachable: {exc}"}
                continue
            try:
                results["postgresql"] = bench("postgresql", url)
            finally:
                drop()
        else:
            raise ValueError(f"unknown backend {backend!r} (sqlite, postgresql)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--results", type=int, default=40_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--devices", type=int, default=4, help="concurrent senders")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "benchmark": "central_ingest",
        "batch_size": args.batch_size,
        "devices": args.devices,
        "uvicorn_workers": args.workers,
        "cpus": os.cpu_count(),
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        folder = Path(tmp)
        try:
            out["backends"] = run_backends(
                args.backends, args.pg_url, folder, lambda name, url: bench_backend(name, url, args, folder)
            )
        except ValueError as exc:
            parser.error(str(exc))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
