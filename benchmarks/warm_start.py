"""How much search time a retrain's warm start saves (issue 12).

    .venv/bin/python -m benchmarks.warm_start [--budget 20] [--seeds 0 1] [--out benchmarks/reports]

A champion is built on the bundled log (cutoff 2011-06-01, 30-day value tier, macro F1); its
retrain's data (newest matured window 2011-09-01) is searched twice per seed with the same time
budget: cold (FLAML's own starting point) and warm (``starting_points`` = the champion's best
configurations, as ``edgeseg-factory retrain`` does). For each run: the search time until a
feasible trial first reaches the champion's quality on the retrain's validation rows (the
champion's graph scored on those rows), and the best quality at the end. Both directions are
reported: the cold search's time to reach the warm search's first-trial quality too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

CHAMPION_CUTOFF = "2011-06-01"
RETRAIN_CUTOFF = "2011-09-01"
HORIZON = 30


def _time_to(trials: list[dict[str, Any]], target: float) -> float | None:
    """Search seconds until the first feasible trial with quality >= target (None: never)."""
    for trial in trials:
        if trial["feasible"] and trial["error"] is None and trial["quality"] >= target:
            return float(trial["elapsed_s"])
    return None


def measure(budget_s: float, seeds: list[int], workdir: Path) -> dict[str, Any]:
    from factory import build
    from factory.retrain import read_champion, warm_start_searches, window_tables

    first = window_tables(None, horizon_days=HORIZON, dormant_days=30, cutoff=CHAMPION_CUTOFF)
    info = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in first.train_info.items()}
    built = build(
        first.train, target="value_tier", id_column="customer_id", name="warm-start", out_dir=workdir,
        time_budget_s=budget_s, seed=0, data_report=info, label_rule=info["thresholds"],
    )  # fmt: skip
    champion = read_champion(built.artifact_dir)
    tables = window_tables(None, horizon_days=HORIZON, dormant_days=30, cutoff=RETRAIN_CUTOFF)
    runs = []
    for seed in seeds:
        found = warm_start_searches(champion, tables.train, time_budget_s=budget_s, seed=seed)
        target = found["target"]
        row: dict[str, Any] = {"seed": seed, "champion_quality": target, "points": found["points"]}
        for name in ("cold", "warm"):
            trials = found[name]
            row[name] = {
                "trials": len(trials),
                "seconds_to_champion": _time_to(trials, target),
                "first_trial_quality": trials[0]["quality"] if trials else None,
                "best_quality": max((t["quality"] for t in trials if t["feasible"]), default=None),
            }
        warm_first = row["warm"]["first_trial_quality"]
        row["cold"]["seconds_to_warm_first_trial"] = None if warm_first is None else _time_to(found["cold"], warm_first)
        runs.append(row)
    return {"budget_s": budget_s, "metric": champion.manifest.metrics.metric if champion.manifest.metrics else None,
            "load_average": os.getloadavg(), "runs": runs}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=float, default=20.0, help="search seconds per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reports"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("flaml").setLevel(logging.ERROR)
    logging.getLogger("edge_runtime").setLevel(logging.ERROR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="warm-start-") as tmp:
        os.environ.setdefault("EDGESEG_KEY_DIR", str(Path(tmp) / "keys"))
        result = measure(args.budget, args.seeds, Path(tmp))
    result["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_start.json").write_text(json.dumps(result, indent=2, default=float))
    for run in result["runs"]:
        cold, warm = run["cold"], run["warm"]
        print(
            f"seed {run['seed']}: champion {result['metric']} {run['champion_quality']:.4f} on the new validation "
            f"rows; cold reaches it after {cold['seconds_to_champion']} s ({cold['trials']} trials, best "
            f"{cold['best_quality']}), warm after {warm['seconds_to_champion']} s ({warm['trials']} trials, best "
            f"{warm['best_quality']}); cold reaches warm's first trial ({warm['first_trial_quality']}) after "
            f"{cold['seconds_to_warm_first_trial']} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
