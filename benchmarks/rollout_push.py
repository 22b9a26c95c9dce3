"""How fast devices learn of a rollout: central's long-poll vs an MQTT broker (issue 12).

    .venv/bin/python -m benchmarks.rollout_push [--devices 8] [--rounds 5]

Long-poll: a real central (uvicorn on loopback, SQLite), ``--devices`` devices of one store each
holding ``GET /v1/models/wait``; the clock runs from the commit of a rollout to that store until
each device's wait returns. MQTT: the Mosquitto broker on 127.0.0.1:1883, ``mosquitto_sub``
subscribed, the clock from just before ``mosquitto_pub`` starts until the line arrives (so it
includes starting the publisher process). Either is far inside the jitter a fleet waits anyway
(``ModelWatcher.jitter_s``, default 5 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def long_poll(devices: int, rounds: int, folder: Path) -> list[float]:
    """Milliseconds from a rollout's commit to each waiting device's answer."""
    sys.path.insert(0, str(ROOT / "tests" / "central"))
    from central_helpers import new_signing_key, write_artifact

    from central.services import devices as device_service
    from central.services.models import register_artifact_dir, rollout

    demo = _load(ROOT / "scripts" / "retrain_demo.py", "retrain_demo")
    key = new_signing_key(folder)
    public = folder / "signing_key.pub.pem"
    central = demo.Central(f"sqlite:///{folder / 'central.db'}", public)
    versions = [f"2026120{i}T000000Z" for i in range(1, rounds + 2)]
    latencies: list[float] = []
    try:
        with central.db.sessionmaker() as session:
            for v in versions:
                register_artifact_dir(session, write_artifact(folder, key, version=v), public, rollout_to="none")
            tokens = [device_service.create_device(session, "store-1")[1] for _ in range(devices)]
            rollout(session, f"retail-tier/{versions[0]}", None)
        for i, version in enumerate(versions[1:]):
            running = f"retail-tier/{versions[i]}"
            answered: list[float] = []
            lock = threading.Lock()

            def wait(token: str, running: str = running, answered: list[float] = answered, lock: Any = lock) -> None:
                request = urllib.request.Request(
                    f"{central.url}/v1/models/wait?running={running}&timeout=20",
                    headers={"Authorization": f"Bearer {token}"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                with lock:
                    answered.append(time.perf_counter())

            threads = [threading.Thread(target=wait, args=(t,)) for t in tokens]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # every device is waiting
            with central.db.sessionmaker() as session:
                started = time.perf_counter()
                rollout(session, f"retail-tier/{version}", "store-1")
            for thread in threads:
                thread.join()
            latencies += [(t - started) * 1000 for t in answered]
    finally:
        central.stop()
    return latencies


def mqtt(rounds: int) -> list[float] | None:
    if shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None:
        return None
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "-t", "edgeseg/rollout/#", "-q", "1"],
        stdout=subprocess.PIPE, text=True, bufsize=1,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        latencies = []
        for _ in range(rounds):
            sent = time.time()
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-t", "edgeseg/rollout/store-1", "-q", "1",
                 "-m", repr(sent)], check=True, timeout=10,
            )  # fmt: skip
            assert sub.stdout is not None
            latencies.append((time.time() - float(sub.stdout.readline())) * 1000)
        return latencies
    finally:
        sub.kill()


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    return f"median {statistics.median(ordered):.0f} ms, max {ordered[-1]:.0f} ms (n={len(ordered)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rollout-push-") as tmp:
        polled = long_poll(args.devices, args.rounds, Path(tmp))
    print(f"long-poll (central, SQLite, {args.devices} devices waiting): rollout commit -> answer {_summary(polled)}")
    pushed = mqtt(args.rounds * 4)
    print(
        "MQTT (mosquitto 127.0.0.1:1883, incl. publisher start): " + (_summary(pushed) if pushed else "not available")
    )
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
