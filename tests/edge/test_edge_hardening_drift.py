"""Issue 10, item 12: drift counts persist with the outbox (same SQLite file, checkpointed in the
transaction of a result), so a killed or restarted Runtime continues them instead of losing
everything since the last report; and there is one spool (the outbox's drift table)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from edge_toy_artifact import GOLDEN_RECORDS

from edge_runtime import Runtime
from edge_runtime.outbox import DRIFT_CHECKPOINT_ROWS
from edge_runtime.sync import DriftSpool

SECRET = "drift-deployment-secret-0123456789"
V1 = "toy-seg/20261127T000000Z"

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from edge_runtime import Runtime
    artifact, key, outbox, n, take_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    records = json.loads(sys.stdin.read())
    runtime = Runtime(artifact, outbox_path=outbox, device_id="d-1", secret=sys.argv[6], public_key=key)
    for i in range(n):
        runtime.classify(records[i % len(records)])
        if i + 1 == take_after:
            print("taken", runtime.drift_snapshot(reset=True)["rows"], flush=True)
    print("classified", n, flush=True)
    time.sleep(600)  # killed here: nothing is closed, nothing spooled at exit
    """
)


def classify_then_kill(artifact: Path, key: Path, outbox: Path, n: int, take_after: int = 0) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(artifact), str(key), str(outbox), str(n), str(take_after), SECRET],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(GOLDEN_RECORDS))
    proc.stdin.close()
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("classified"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lines and lines[-1] == f"classified {n}", proc.stderr.read() if proc.stderr else ""
    return lines


def pending_rows(outbox: Path) -> dict[str, int]:
    return {p.model_version: p.rows for p in DriftSpool.for_outbox(outbox).pending()}


def test_a_killed_runtime_leaves_its_checkpointed_counts_to_the_next_one(toy_artifact, toy_public_key, tmp_path):
    outbox = tmp_path / "o.db"
    n = 2 * DRIFT_CHECKPOINT_ROWS + 50
    classify_then_kill(toy_artifact, toy_public_key, outbox, n)
    # The next process to open the outbox finds the dead writer's checkpoint and spools it.
    runtime = Runtime(toy_artifact, outbox_path=outbox, device_id="d-1", secret=SECRET, public_key=toy_public_key)
    [pending] = DriftSpool.for_outbox(outbox).pending()
    assert (pending.model_version, pending.rows) == (V1, 2 * DRIFT_CHECKPOINT_ROWS)  # all but the last 50
    assert all(sum(counts) == pending.rows for counts in pending.histograms.values())
    assert runtime.outbox.last_seq() == n  # (every result is there, as always)
    # The counts continue: what this process classifies adds to them.
    for record in GOLDEN_RECORDS * 5:
        runtime.classify(record)
    runtime.close()
    assert pending_rows(outbox) == {V1: 2 * DRIFT_CHECKPOINT_ROWS + 5 * len(GOLDEN_RECORDS)}


def test_counts_handed_out_are_never_recovered_again(toy_artifact, toy_public_key, tmp_path):
    """A snapshot taken with reset (and sent by its taker) leaves no checkpoint behind."""
    outbox = tmp_path / "o.db"
    lines = classify_then_kill(toy_artifact, toy_public_key, outbox, DRIFT_CHECKPOINT_ROWS + 30, DRIFT_CHECKPOINT_ROWS)
    assert lines[0] == f"taken {DRIFT_CHECKPOINT_ROWS}"
    Runtime(toy_artifact, outbox_path=outbox, device_id="d-1", secret=SECRET, public_key=toy_public_key).close()
    assert pending_rows(outbox) == {}  # the 30 after the take were never checkpointed; nothing doubled


def test_a_restart_continues_the_counts(toy_artifact, toy_public_key, tmp_path):
    outbox = tmp_path / "o.db"
    for rounds in (3, 2):
        runtime = Runtime(toy_artifact, outbox_path=outbox, device_id="d-1", secret=SECRET, public_key=toy_public_key)
        for record in GOLDEN_RECORDS * rounds:
            runtime.classify(record)
        runtime.classify_many(GOLDEN_RECORDS)
        runtime.close()
    assert pending_rows(outbox) == {V1: 7 * len(GOLDEN_RECORDS)}


def test_a_model_swap_spools_the_old_models_counts(toy_artifact, toy_artifact_b, toy_public_key, tmp_path):
    outbox = tmp_path / "o.db"
    runtime = Runtime(toy_artifact, outbox_path=outbox, device_id="d-1", secret=SECRET, public_key=toy_public_key)
    for record in GOLDEN_RECORDS:
        runtime.classify(record)
    runtime.swap_model(toy_artifact_b)
    runtime.classify(GOLDEN_RECORDS[0])
    assert pending_rows(outbox) == {V1: len(GOLDEN_RECORDS)}  # at the new model's first result
    runtime.close()
    assert pending_rows(outbox) == {V1: len(GOLDEN_RECORDS), "toy-seg/20261127T010000Z": 1}


def test_old_spool_files_move_into_the_outbox(tmp_path):
    outbox = tmp_path / "o.db"
    legacy = tmp_path / "o.db-drift"
    legacy.mkdir()
    snapshot = {"model_version": V1, "rows": 2, "inputs": {"Age": {"counts": [1, 1, 0, 0, 0, 0]}}}
    (legacy / "20261130T000000000000Z-1-1.json").write_text(json.dumps(snapshot))
    (legacy / "broken.json").write_text("{")
    assert pending_rows(outbox) == {V1: 2}
    assert list(legacy.glob("*.json")) == []
