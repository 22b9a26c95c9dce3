"""A small fleet through the real stack (issue 17): ``edgeseg-central serve --workers 2`` on
loopback, devices syncing concurrently with lost-ack replays and drift snapshots, then the
database read back. Correctness only — every result stored exactly once, acks and watermarks
right, drifted devices flagged — never a rate or a latency (benchmarks/central_fleet.py
measures those)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.central_fleet import parse_args, run  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_fleet_syncing_through_two_workers_stores_every_result_once(backend, request) -> None:  # type: ignore[no-untyped-def]
    argv = ["--backends", backend, "--devices", "20", "--batches", "3", "--batch-size", "10",
            "--paced-batches", "1", "--replay-fraction", "0.3", "--deadline-s", "120"]  # fmt: skip
    if backend == "postgresql":
        user, _ = request.getfixturevalue("pg_database")  # skips (or fails in CI) without a server
        argv += ["--pg-url", f"postgresql+psycopg://{user}@127.0.0.1:5432/test"]
    report = run(parse_args(argv))["backends"][backend]
    check = report["check"]
    assert check["sent"] == 20 * 4 * 10
    assert (check["rows"], check["keys"]) == (check["sent"], check["sent"])
    assert (check["lost"], check["duplicated"], check["unexpected"], check["wrong_content"]) == (0, 0, 0, 0)
    assert check["watermark_mismatches"] == 0 and report["exactly_once"]
    for phase in ("saturation", "paced"):
        assert report[phase]["errors"] == 0, report[phase]["error_kinds"]
        assert report[phase]["bad_acks"] == 0
    saturation = report["saturation"]
    assert saturation["acked_stored"] + report["paced"]["acked_stored"] == check["sent"]
    # Every replayed batch came back as duplicates only (10 results each).
    assert saturation["acked_duplicates"] == 10 * saturation["replayed_batches"] > 0
    # Two of the 20 devices drift; each posts a snapshot every second batch.
    assert saturation["drift_posts"] == 20 and saturation["drift_flagged"] == 2


def test_metrics_of_two_workers_are_summed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``serve --workers 2``: whichever worker answers /metrics, it counts every worker's requests."""
    import os
    import re
    import subprocess
    import time
    import urllib.request

    from central_helpers import ADMIN_TOKEN, free_port

    port = free_port()
    env = {**os.environ, "EDGESEG_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
           "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN, "EDGESEG_ENV": "test"}  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        sys.executable,
        "-m",
        "central.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    answered = 0

    def get(path: str) -> str:
        with urllib.request.urlopen(url + path, timeout=5) as response:  # a new connection each time
            return response.read().decode()

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get("/healthz")
                answered += 1
                break
            except OSError:
                time.sleep(0.2)
        assert answered, "central did not start"
        for _ in range(30):
            get("/healthz")
            answered += 1
        pattern = re.compile(r'edgeseg_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)')
        for _ in range(6):  # scrapes land on either worker
            found = pattern.search(get("/metrics"))
            assert found is not None and float(found.group(1)) == answered
    finally:
        process.terminate()
        process.wait(timeout=20)
