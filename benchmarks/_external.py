"""Numbers owned by other parts of edgeseg, gathered by running their own benchmark scripts.

``benchmarks/edge_latency.py`` (edge runtime: Runtime with outbox, outbox append per durability
mode, batch, cold start) and ``benchmarks/central_ingest.py`` (central ingest on SQLite and
PostgreSQL) each print one JSON object. They run as subprocesses, so their imports, threads and
databases never touch the measurements of this process; an absent script is reported as
pending, a failing one with its last error line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["EDGE_SCRIPT", "CENTRAL_SCRIPT", "FEATURES_SCALE_SCRIPT", "FLEET_SCRIPT", "run_script"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDGE_SCRIPT = HERE / "edge_latency.py"
CENTRAL_SCRIPT = HERE / "central_ingest.py"
FEATURES_SCALE_SCRIPT = HERE / "features_scale.py"  # pandas vs Spark: feature building and search
FLEET_SCRIPT = HERE / "central_fleet.py"


def _help_text(script: Path) -> str:
    try:
        proc = subprocess.run(
            [sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout + proc.stderr


def _mode_flags(script: Path, mode: str) -> list[str]:
    """Pass ``--smoke``/``--quick``/``--full`` only when the script says it accepts them."""
    text = _help_text(script)
    wanted = {"smoke": ["--smoke", "--quick"], "quick": ["--quick"], "full": ["--full"]}[mode]
    for flag in wanted:
        if flag in text:
            return [flag]
    return []


def _first_json_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the script's output")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(value, dict):
        raise ValueError("the script's JSON is not an object")
    return value


def run_script(script: Path, args: list[str], *, mode: str, timeout_s: float) -> dict[str, Any]:
    """Run one owner's script; ``{"status": "ok"|"pending"|"failed", ...}``."""
    if not script.is_file():
        return {"status": "pending", "script": script.name, "note": f"{script.name} is not in the repository yet"}
    argv = [sys.executable, str(script), *args, *_mode_flags(script, mode)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "script": script.name, "note": f"timed out after {timeout_s:g} s"}
    seconds = time.perf_counter() - started
    command = " ".join(
        [Path(argv[0]).name, *[str(Path(a).relative_to(REPO)) if a.startswith(str(REPO)) else a for a in argv[1:]]]
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return {
            "status": "failed",
            "script": script.name,
            "command": command,
            "note": f"exit {proc.returncode}: {tail[:300]}",
        }
    try:
        data = _first_json_object(proc.stdout)
    except ValueError as exc:
        return {"status": "failed", "script": script.name, "command": command, "note": str(exc)}
    return {"status": "ok", "script": script.name, "command": command, "seconds": seconds, "data": data}
