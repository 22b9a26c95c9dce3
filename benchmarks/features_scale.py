"""Beyond one machine, factory half: feature building and the search, pandas vs Spark ``local[2]``.

    python benchmarks/features_scale.py            # 1 M and 10 M lines (make bench)
    python benchmarks/features_scale.py --full     # ... and 50 M (make bench FULL=1)
    python benchmarks/features_scale.py --smoke    # 200 k lines, short searches

For each size, a synthetic log with the bundled log's statistics (``write_synthetic_log``,
seed 0, cached under ``--cache``) is read, cleaned and turned into the RFM+X customer table at
the default cutoff (``load_log(...).features``), once with pandas and once with Spark, each in a
fresh child process. Measured: wall time (Spark's session start
reported apart), lines per second, and the peak memory of the child's whole process tree (for
Spark: Python driver, JVM and Python workers), sampled from /proc every 50 ms. From pandas'
largest point: bytes of memory per log line, and the log size at which pandas no longer fits in
this machine's memory. A pandas point whose estimate exceeds the memory available is skipped,
not run into the OOM killer.

Then the search: the same table, the same time budget, FLAML sequential (one trial at a time,
each using every core) vs FLAML on Spark (one single-thread trial per core), on the bundled
log's table and on the largest synthetic log's table: trials completed, best validation loss
among in-budget trials, wall time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GIB = 1024**3
SPARK_MASTER = "local[2]"
SPARK_DRIVER_MEMORY = "2g"
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"sizes": [200_000], "search_s": 5.0},
    "quick": {"sizes": [1_000_000, 10_000_000], "search_s": 30.0},
    "full": {"sizes": [1_000_000, 10_000_000, 50_000_000], "search_s": 60.0},
}

# Child process: clean the log and build the RFM+X table with one engine (timed), then label it
# (untimed; the search needs the label) and save it. Not build_value_tier_table: on pandas that
# also replays the log through the till's implementation (the skew gate), which Spark does not.
FEATURES_CHILD = """
import json, sys, time
import pandas as pd
engine, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
started = time.perf_counter()
if engine == "spark":
    from factory import spark_session
    spark_session({master!r}, conf={{"spark.driver.memory": {memory!r}}})
session_s = time.perf_counter() - started
from factory.features import load_log
started = time.perf_counter()
log = load_log(path, engine=engine, spark_master={master!r})
cutoff = (log.last - pd.Timedelta(days=90)).normalize()
features = log.features(cutoff, 30.0)
seconds = time.perf_counter() - started
from factory.features import value_tier_from_spend
tier, _ = value_tier_from_spend(log.window_spend, log.last, cutoff, features.index, horizon_days=90)
features.assign(value_tier=tier).reset_index().to_parquet(out)
print(json.dumps({{"seconds": seconds, "session_s": session_s, "customers": len(features),
                  "rows_read": log.report.rows_read, "rows_kept": log.report.rows_kept}}))
"""

# Child process: one budgeted search (sequential or on Spark) on a saved table.
SEARCH_CHILD = """
import json, logging, sys, time, warnings
warnings.filterwarnings("ignore")
logging.getLogger("flaml").setLevel(logging.ERROR)
import pandas as pd
from factory import BuildConfig
# the stages up to the search alone: a whole build would add export, parity and the card to the time
from factory.stages import load_data, make_labels, search_models, split_data
engine, table, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
if engine == "spark":
    from factory import spark_session
    spark_session({master!r}, conf={{"spark.driver.memory": {memory!r}}})
config = BuildConfig(target="value_tier", id_column="customer_id", time_budget_s=budget, engine=engine,
                     spark_master={master!r}, seed=0)
dataset = split_data(make_labels(load_data(pd.read_parquet(table), config), config), config)
started = time.perf_counter()
search = search_models(dataset, config).search
wall = time.perf_counter() - started
flaml = [t for t in search.trials if not t.learner.startswith("baseline_")]
feasible = [t for t in flaml if t.feasible]
print(json.dumps({{"trials": len(flaml), "feasible_trials": len(feasible),
                  "best_validation_loss": min((t.loss for t in feasible), default=None),
                  "best_learner": min(feasible, key=lambda t: t.loss).learner if feasible else None,
                  "wall_s": wall, "rows": int(len(dataset.frame))}}))
"""


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return total


def run_child(code: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its JSON line plus the tree's peak RSS and wall time."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    argv = [sys.executable, "-c", code, *args]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"status": "failed", "note": f"timed out after {timeout_s:g} s"}
    finally:
        done.set()
        sampler.join()
    if proc.returncode != 0:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "note": f"exit {proc.returncode}: {tail[:300]}"}
    data = json.loads(out.strip().splitlines()[-1])
    return {"status": "ok", **data, "peak_rss_gib": peak[0] / GIB, "child_s": time.perf_counter() - started}


def pandas_memory_fit(points: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(fixed bytes, bytes per line) of pandas' peak memory, from the two largest points so far
    (the slope between them, so the interpreter's and libraries' fixed cost cancels)."""
    done = [
        (p["lines"], p["pandas"]["peak_rss_gib"] * GIB) for p in points if p.get("pandas", {}).get("status") == "ok"
    ]
    if not done:
        return None
    if len(done) == 1:
        return 0.0, done[0][1] / done[0][0]
    (small, small_rss), (large, large_rss) = done[-2:]
    slope = (large_rss - small_rss) / (large - small)
    return large_rss - slope * large, slope


def synthetic_log(cache: Path, lines: int) -> Path:
    """The seed-0 synthetic log of ``lines`` lines, generated once per cache folder."""
    from factory.features import write_synthetic_log

    path = cache / f"synthetic-{lines}-seed0.parquet"
    if not path.is_file():
        partial = path.with_suffix(".partial")
        write_synthetic_log(partial, lines, seed=0)
        partial.rename(path)
    return path


def memory_available() -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_total() -> int:
    with open("/proc/meminfo") as info:
        return int(info.readline().split()[1]) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="200 k lines, 5 s searches")
    mode.add_argument("--quick", action="store_true", help="1 M and 10 M lines, 30 s searches (default)")
    mode.add_argument("--full", action="store_true", help="1 M, 10 M and 50 M lines, 60 s searches")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgeseg-bench-logs")
    parser.add_argument("--sizes", help="comma-separated line counts instead of the mode's")
    parser.add_argument("--search-s", type=float, help="search time budget instead of the mode's")
    parser.add_argument("--no-search", action="store_true", help="only feature building")
    args = parser.parse_args()
    preset = MODES["full" if args.full else "smoke" if args.smoke else "quick"]
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else preset["sizes"]
    search_s = args.search_s or preset["search_s"]
    args.cache.mkdir(parents=True, exist_ok=True)
    features_code = FEATURES_CHILD.format(master=SPARK_MASTER, memory=SPARK_DRIVER_MEMORY)
    search_code = SEARCH_CHILD.format(master=SPARK_MASTER, memory=SPARK_DRIVER_MEMORY)
    result: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "memory_gib": memory_total() / GIB, "load_average": os.getloadavg()},
        "spark": {"master": SPARK_MASTER, "driver_memory": SPARK_DRIVER_MEMORY},
        "features": [],
        "search": [],
    }
    tables: dict[str, Path] = {}
    for lines in sizes:
        started = time.perf_counter()
        log = synthetic_log(args.cache, lines)
        print(f"log {lines:,} lines ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        point: dict[str, Any] = {"lines": lines, "log_bytes": log.stat().st_size}
        for engine in ("pandas", "spark"):
            table = args.cache / f"table-{lines}-{engine}.parquet"
            fit = pandas_memory_fit(result["features"])
            expected = None if fit is None else fit[0] + fit[1] * lines
            if engine == "pandas" and expected is not None and expected > 0.8 * memory_available():
                point[engine] = {
                    "status": "skipped",
                    "note": f"needs ~{expected / GIB:.1f} GiB, {memory_available() / GIB:.1f} GiB available",
                }
                continue
            measured = run_child(features_code, [engine, str(log), str(table)], timeout_s=7200)
            if measured["status"] == "ok":
                measured["lines_per_s"] = lines / measured["seconds"]
                tables[f"synthetic {lines:,} lines"] = table
            point[engine] = measured
            print(f"  {engine}: {json.dumps(measured)}", file=sys.stderr, flush=True)
        result["features"].append(point)
    fit = pandas_memory_fit(result["features"])
    if fit is not None:
        fixed, per_line = fit
        result["pandas_memory"] = {
            "bytes_per_line": per_line,
            "fixed_bytes": fixed,
            "lines_that_fit_24_gib": (24 * GIB - fixed) / per_line,
            "lines_that_fit_this_machine": (memory_total() - fixed) / per_line,
        }
    if not args.no_search:
        from factory.features import build_value_tier_table

        bundled = args.cache / "table-bundled.parquet"
        build_value_tier_table()[0].to_parquet(bundled)
        largest = [name for name in tables if name.startswith("synthetic")][-1:]
        for name, table in [("bundled Online Retail", bundled), *((n, tables[n]) for n in largest)]:
            for engine in ("pandas", "spark"):
                measured = run_child(search_code, [engine, str(table), str(search_s)], timeout_s=search_s * 6 + 600)
                result["search"].append({"table": name, "engine": engine, "time_budget_s": search_s, **measured})
                print(f"  search {name} {engine}: {json.dumps(measured)}", file=sys.stderr, flush=True)
    result["machine"]["load_average_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
