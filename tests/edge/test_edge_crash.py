"""SIGKILL a classifying process at random moments: every returned seq is in the outbox.

The child prints each seq *after* ``Runtime.classify`` returned it; the parent kills it at a
random moment (during start-up, mid-commit, mid-print), reads every complete line, restarts
it, and repeats. At the end the outbox must hold exactly 1..N with no gap or duplicate, and
every seq a caller ever saw must be among them.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("edge_crash_child.py")
KILLS = 20
# The loop stops at KILLS rounds or at this bound, whichever comes first; the bound only
# matters when the child hangs (a round normally takes well under a second).
TIME_BOUND_S = 120.0
MIN_KILLS = 4  # fewer rounds than this inside the bound: the child hangs, which is a failure


def run_and_kill(args: list[str], delay_s: float, *, after_first_result: bool) -> list[int]:
    """Start the child, SIGKILL it ``delay_s`` after start (or after its first result)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[bytes] = []
    first = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    if after_first_result:
        first.wait(timeout=15)  # a loaded machine can take seconds to start Python
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    reader.join(timeout=10)
    stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL, stderr  # it was still running: killed, not crashed
    # A half-written last line was never "returned" to anyone.
    return [int(line) for line in lines if line.endswith(b"\n")]


@pytest.mark.slow
def test_sigkill_never_loses_or_duplicates_a_returned_result(toy_artifact, toy_public_key, tmp_path):
    rng = random.Random(20261127)
    outbox = tmp_path / "outbox.db"
    args = [str(toy_artifact), str(toy_public_key), str(outbox)]
    seen: list[int] = []
    deadline = time.monotonic() + TIME_BOUND_S
    kills = 0
    while kills < KILLS and time.monotonic() < deadline:
        # Every other kill lands at a random moment from start (often during start-up or the
        # first commits); the others a random moment into steady classification.
        seen.extend(run_and_kill(args, rng.uniform(0.0, 0.3), after_first_result=kills % 2 == 1))
        kills += 1
    if kills < MIN_KILLS:
        pytest.fail(f"only {kills} of {KILLS} kill rounds finished in {TIME_BOUND_S:g} s: the child process hangs")
    with sqlite3.connect(outbox) as db:
        stored = [row[0] for row in db.execute("SELECT seq FROM results ORDER BY seq")]
    assert len(seen) > kills, "the children should have returned results before most kills"
    assert len(seen) == len(set(seen)), "a seq was returned twice"
    assert stored == list(range(1, len(stored) + 1)), "seq has a gap or a duplicate"
    missing = sorted(set(seen) - set(stored))
    assert missing == [], f"returned but not in the outbox: {missing[:10]}"
    # At most one result per kill can be committed but not yet printed.
    assert len(stored) - len(seen) <= kills
    print(f"{kills} kills: {len(seen)} results returned, {len(stored)} stored")
