"""Retrain (issue 12): time splits that never overlap, a warm start from the champion's search,
lineage in the manifest, and a promotion gate that stops a broken challenger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from factory.retrain import paired_bootstrap, promotion_gate, read_champion, window_tables

HORIZON = 30  # the shared champion_dir fixture (conftest.py) uses the same horizon
CHALLENGER_CUTOFF = "2011-07-01"


def test_windows_never_overlap_and_nothing_after_the_window_is_read() -> None:
    tables = window_tables(None, horizon_days=HORIZON, dormant_days=30, cutoff=CHALLENGER_CUTOFF)
    w = tables.window
    train_end = pd.Timestamp(w["train_label_window"][1])
    eval_start, eval_end = (pd.Timestamp(x) for x in w["eval_label_window"])
    assert pd.Timestamp(w["train_cutoff"]) == pd.Timestamp(CHALLENGER_CUTOFF) - pd.Timedelta(days=HORIZON)
    assert train_end == eval_start == pd.Timestamp(CHALLENGER_CUTOFF)  # back to back, never overlapping
    assert pd.Timestamp(w["log_last_used"]) < eval_end  # the log as known at T + H only
    assert set(tables.train["value_tier"]) <= {"lapsed", "low", "mid", "high", "top"}
    assert "feature_program" in tables.train_info and "skew_gate" in tables.train_info


def test_paired_bootstrap_interval_brackets_the_difference() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    good = np.where(rng.random(2000) < 0.8, y, (y + 1) % 3)
    worse = np.where(rng.random(2000) < 0.6, y, (y + 1) % 3)
    better = paired_bootstrap(y, worse, good, metric="accuracy", n_classes=3, resamples=300)
    assert better["ci_low"] > 0 and better["ci_low"] <= better["difference"] <= better["ci_high"]
    same = paired_bootstrap(y, good, good, metric="macro_f1", n_classes=3, resamples=100)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_gate_names_every_rule_that_keeps_the_champion() -> None:
    y = ["a", "b"] * 200
    gate = promotion_gate(
        y, y, y, classes=["a", "b"], metric="accuracy", margin=0.01, resamples=50,
        checks={"budgets": True, "parity": True, "skew_gate": False},
    )  # fmt: skip
    assert not gate.promote
    assert gate.section["decision"] == "keep_champion"
    assert any("below the margin" in r for r in gate.reasons)
    assert any("does not exclude zero" in r for r in gate.reasons)
    assert "skew_gate not passed" in gate.reasons


def test_retrain_warm_starts_and_the_gate_stops_shuffled_labels(champion_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from factory.cli import main
    from factory.retrain import champion_starting_points

    champion = read_champion(champion_dir)
    points = champion_starting_points(champion, n_rows=1000, n_features=len(champion.manifest.inputs))
    best = min((t for t in champion.trials if t["learner"] == "lgbm" and t["feasible"]), key=lambda t: t["loss"])
    first = points["lgbm"][0]
    assert champion.manifest.search is not None
    assert first["n_estimators"] == best["config"]["n_estimators"] or champion.manifest.search.learner == "lgbm"
    # FLAML's search-space names: a FLAML trial's max_bin becomes log_max_bin; an exported preset
    # (factory._presets, which sets no max_bin) gives a partial point FLAML completes itself.
    from flaml.automl.task.factory import task_factory

    task = task_factory("classification")
    space = task.estimator_class_from_str("lgbm").search_space(
        data_size=(1000, len(champion.manifest.inputs)), task=task
    )
    assert all(set(point) <= set(space) for point in points["lgbm"])
    assert ("log_max_bin" in first) == ("max_bin" in champion.manifest.search.config) and "max_bin" not in first

    code = main([
        "retrain", "--champion", str(champion_dir), "--cutoff", CHALLENGER_CUTOFF, "--time-budget-s", "5",
        "--resamples", "200", "--shuffle-labels", "--json",
    ])  # fmt: skip
    out = capsys.readouterr().out
    section = json.loads(out)
    print(out)
    assert code == 3, "a challenger trained on shuffled labels must not be promoted"
    assert section["decision"] == "keep_champion" and section["difference"] < 0
    written = sorted(p for p in champion_dir.parent.iterdir() if p != champion_dir)[-1]
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["lineage"]["parent"] == champion.model_version
    assert manifest["lineage"]["data_window"]["eval_cutoff"].startswith(CHALLENGER_CUTOFF)
    assert manifest["lineage"]["warm_start"] == {"lgbm": len(points["lgbm"])}
    assert manifest["promotion"] == section
    card = (written / "card.md").read_text()
    assert "## Promotion gate" in card and "NOT promoted" in card
