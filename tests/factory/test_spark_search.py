"""``edgeseg-factory build-default --engine spark``: features and search on Spark (issue 17).

A search of a few seconds on ``local[2]``: FLAML runs its trials on Spark workers, every trial
comes back to the search log with its measured latency and size, over-budget trials are marked
and passed over, and the exported model meets the budgets. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from factory._spark_search import SparkBudgetedMetric

SIZE_BUDGET_KB = 6  # FLAML's first LightGBM (4 trees of 4 leaves) exports to ~7 KB: over budget


def test_build_default_on_spark_logs_every_trial_within_budget(spark: Any, tmp_path: Path) -> None:
    from factory.cli import main

    out = tmp_path / "out"
    code = main(
        ["build-default", "--engine", "spark", "--spark-master", "local[2]", "--quiet", "--out", str(out),
         "--time-budget-s", "6", "--learners", "lgbm", "rf", "--size-budget-kb", str(SIZE_BUDGET_KB)]
    )  # fmt: skip
    assert code == 0
    (artifact,) = list(out.glob("retail-tier/*"))
    manifest = json.loads((artifact / "manifest.json").read_text())
    trials = [json.loads(line) for line in (artifact / "search_log.jsonl").read_text().splitlines()]

    # The customer table was built by Spark, and it is the pandas one (test_spark_features).
    assert manifest["data"]["report"]["engine"] == "spark"
    assert manifest["data"]["rows"] == 3370
    # Two trials at a time on local[2]: FLAML was told so (its executor count would say 1).
    assert os.environ["FLAML_MAX_CONCURRENT"] == "2"

    searched = [t for t in trials if not t["learner"].startswith("baseline_")]
    assert len(searched) >= 2 and {t["learner"] for t in searched} <= {"lgbm", "rf"}
    assert manifest["search"]["trials"] == len(trials)
    assert [t["index"] for t in trials] == list(range(len(trials)))
    for trial in searched:  # measured on the worker: latency and size of the real graph
        assert trial["error"] is None
        assert 0 < trial["latency_p50_us"] <= trial["latency_p99_us"] < math.inf
        assert trial["size_bytes"] > 0
        over = trial["size_bytes"] > SIZE_BUDGET_KB * 1024 or trial["latency_p99_us"] > 50
        assert trial["feasible"] is not over
    first_lgbm = next(t for t in searched if t["learner"] == "lgbm")
    assert first_lgbm["size_bytes"] > SIZE_BUDGET_KB * 1024 and first_lgbm["feasible"] is False

    budgets = manifest["budgets"]
    assert budgets["met"] is True
    assert budgets["measured"]["size_bytes"] <= SIZE_BUDGET_KB * 1024 == budgets["size_bytes"]
    assert budgets["measured"]["latency_p99_us"] <= budgets["latency_p99_us"]
    chosen = trials[manifest["search"]["trial_index"]]
    assert chosen["feasible"] is True and chosen["learner"] == manifest["search"]["learner"]


def test_spark_metric_is_importable_by_workers() -> None:
    """Workers unpickle the metric by reference: it must be a module-level class of factory."""
    assert SparkBudgetedMetric.__module__ == "factory._spark_search"
    assert SparkBudgetedMetric.__qualname__ == "SparkBudgetedMetric"
