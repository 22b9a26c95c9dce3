"""Drift counts stay exact when single records, batches and snapshots run on different threads.

A till classifies single records on its request thread while a batch job and the sync loop
(which takes drift snapshots with reset) run beside it; head office's PSI is only right if not
one count is lost or doubled. Before DriftHistograms locked itself, single-record counts were
taken under the classifier's lock while batches and snapshots used the drift lock.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge_toy_artifact import GOLDEN_RECORDS

from edge_runtime import Runtime

# Each loop ends at its record count or at the time bound, whichever comes first; the test
# asserts counts, never how far a loop got in the time.
SINGLE_RECORDS = 20_000
BATCH_RECORDS = 200_000
TIME_BOUND_S = 3.0
# 300 > BATCH_SESSION_MIN_ROWS, so the threaded batch session is exercised too
BATCH_SIZES = (1, 7, 64, 300)

RECORDS: list[dict[str, Any]] = [
    *GOLDEN_RECORDS,
    {"Age": 30},  # everything else missing (Age is required by the toy model)
    {"Age": 120.0, "Profession": "Astronaut", "Var_1": "Cat_99"},  # out of range, unseen categories
]


def _drift_totals(snapshot: dict[str, Any]) -> tuple[int, dict[str, int]]:
    return snapshot["rows"], {name: sum(entry["counts"]) for name, entry in snapshot["inputs"].items()}


def test_single_and_batch_threads_count_every_record_exactly(
    toy_artifact: Path, toy_public_key: Path, tmp_path: Path
) -> None:
    # Switch threads every microsecond instead of every 5 ms: far more interleavings per
    # second, so an unguarded count is caught in a short run (it was, before the fix).
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _run(toy_artifact, toy_public_key, tmp_path)
    finally:
        sys.setswitchinterval(previous)


def _run(toy_artifact: Path, toy_public_key: Path, tmp_path: Path) -> None:
    runtime = Runtime(
        toy_artifact, outbox_path=tmp_path / "outbox.db", device_id="d-1", secret=b"s" * 32, public_key=toy_public_key
    )
    deadline = time.monotonic() + TIME_BOUND_S
    classified = {"single": 0, "batch": 0}
    errors: list[BaseException] = []
    done = threading.Event()
    snapshots: list[dict[str, Any]] = []

    def single() -> None:
        for record in itertools.islice(itertools.cycle(RECORDS), SINGLE_RECORDS):
            if time.monotonic() > deadline:
                break
            runtime.classify(record)
            classified["single"] += 1

    def batches() -> None:
        for size in itertools.cycle(BATCH_SIZES):
            if classified["batch"] + size > BATCH_RECORDS or time.monotonic() > deadline:
                break
            batch = list(itertools.islice(itertools.cycle(RECORDS), size))
            classified["batch"] += len(runtime.classify_many(batch))

    def snapshot_with_reset() -> None:  # what the sync loop does while the till serves
        while not done.wait(0.05):
            snapshots.append(runtime.drift_snapshot(reset=True))

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # surfaced below: a thread's failure must fail the test
                errors.append(exc)

        return run

    workers = [threading.Thread(target=guarded(w)) for w in (single, batches)]
    sampler = threading.Thread(target=guarded(snapshot_with_reset))
    sampler.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    sampler.join()
    snapshots.append(runtime.drift_snapshot(reset=True))
    stored = runtime.outbox.last_seq()
    runtime.close()

    assert errors == []
    assert classified["single"] > 0 and classified["batch"] > 0
    total = classified["single"] + classified["batch"]
    assert sum(snapshot["rows"] for snapshot in snapshots) == total
    for snapshot in snapshots:
        rows, per_input = _drift_totals(snapshot)
        # every counted row lands in exactly one bin (or missing/other slot) of every input
        assert per_input and set(per_input.values()) == {rows}
    assert stored == total  # and every result is in the outbox, once
