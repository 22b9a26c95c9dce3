"""The README's issue-13 table is computed from the benchmark's JSON lines: gaps to the LightGBM
reference per seed and their median, one row per table."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.tables_report import summarize


def _run(table: str, seed: int, ours: float, reference: float, method: str = "cv") -> dict:
    return {
        "table": table, "rows": 2240, "seed": seed, "held_out_metric": "roc_auc", "held_out": ours,
        "references": {"lightgbm_300": reference, "logistic": 0.8}, "learner": "xgboost",
        "selection": {"method": method}, "search_p99_us": 30.2, "p99_us": 35.7,
    }  # fmt: skip


def test_one_row_per_table_with_the_median_gap(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    runs = [_run("a.csv", 1, 0.90, 0.92), _run("b.csv", 0, 0.70, 0.60, "holdout"), _run("a.csv", 0, 0.95, 0.91),
            _run("a.csv", 2, 0.91, 0.91)]  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in runs))
    lines = summarize(results).splitlines()
    assert len(lines) == 4  # header, rule, two tables
    a, b = lines[2], lines[3]
    assert a.startswith("| a.csv | 2,240 | roc_auc | 0, 1, 2 |")  # seeds sorted
    assert "| +0.040 / -0.020 / +0.000 | **+0.000** |" in a  # median of the three gaps
    assert "| 0.950 / 0.900 / 0.910 | 0.910 / 0.920 / 0.910 |" in a
    assert "| **+0.100** |" in b and "| holdout |" in b
    assert "30 → 36" in a
    assert "| —, —, — |" in a  # no CV recorded by these runs


def test_the_cv_pair_is_shown_when_the_run_recorded_it(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    run = _run("a.csv", 0, 0.90, 0.92) | {"cv_quality": 0.9051, "references_cv": {"lightgbm_300": 0.8962}}
    results.write_text(json.dumps(run) + "\n")
    assert "| 0.905 / 0.896 |" in summarize(results).splitlines()[2]
