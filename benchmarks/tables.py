"""Customer tables as they come: build on a table, compare with the references the issue used.

    .venv/bin/python -m benchmarks.tables --data T.csv --target Y [--drop ID ...] [--metric roc_auc]
        [--time-budget-s 60] [--out DIR] [--json results.jsonl]

One row per run: how each column was read, the build's held-out metric (AUC for two classes,
macro-F1 otherwise) and accuracy, its p99 latency (re-measured artifact), what it was chosen
against (the card's best baseline on validation), and two references trained on the *same*
train + validation rows and scored on the *same* test rows: a scaled logistic regression and an
unconstrained LightGBM (300 trees) — the issue's yardsticks (issue 13). The references read the
build's own preprocessed inputs, so they differ from the build only in the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _held_out(metric: str, y: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    from factory import score

    return score(metric, y, proba, n_classes)[0]


def _exported_cv_quality(search: dict[str, Any]) -> float | None:
    """The exported trial's cross-validated quality (None: chosen on the holdout)."""
    ranked = (search.get("selection") or {}).get("ranked", [])
    return next((r["cv_quality"] for r in ranked if r["trial_index"] == search["trial_index"]), None)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import lightgbm
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from factory import build, score

    started = time.monotonic()
    result = build(
        args.data,
        target=args.target,
        drop=args.drop,
        metric=args.metric,
        time_budget_s=args.time_budget_s,
        out_dir=args.out,
        date_columns=args.date_column,
        seed=args.seed,
        cv_folds=args.cv_folds,
    )
    wall = time.monotonic() - started
    manifest = result.manifest
    classes = result.classes
    k = len(classes)
    held_metric = "roc_auc" if k == 2 else "macro_f1"
    split = result.split
    y = np.asarray([classes.index(c) for c in result.labels])
    prep = result.native_pipeline[:-1]
    fit_rows = np.concatenate([split.train, split.validation])
    x_fit = prep.transform(result.frame.iloc[fit_rows])
    x_test = prep.transform(result.frame.iloc[split.test])
    y_fit, y_test = y[fit_rows], y[split.test]
    references = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
        "lightgbm_300": lightgbm.LGBMClassifier(n_estimators=300, verbose=-1, random_state=args.seed),
    }
    reference_scores, reference_cv = {}, {}
    # The same folds the rerank stage scored the exported configuration on (StratifiedKFold over
    # the train + validation rows, shuffled with the build's seed), so the two CV figures compare.
    folds = list(StratifiedKFold(5, shuffle=True, random_state=args.seed).split(x_fit, y_fit))
    for name, model in references.items():
        fold_scores = []
        for fit, held in folds:
            proba = clone(model).fit(x_fit[fit], y_fit[fit]).predict_proba(x_fit[held])
            fold_scores.append(score(manifest["metrics"]["metric"], y_fit[held], np.asarray(proba), k)[0])
        reference_cv[name] = float(np.mean(fold_scores))
        model.fit(x_fit, y_fit)
        reference_scores[name] = _held_out(held_metric, y_test, np.asarray(model.predict_proba(x_test)), k)
    baseline = manifest["metrics"]["baseline"]
    metric = manifest["metrics"]["metric"]
    return {
        "table": Path(args.data).name,
        "rows": manifest["data"]["rows"],
        "seed": args.seed,
        "selection": {k: v for k, v in (manifest["search"].get("selection") or {}).items() if k != "ranked"},
        "cv_quality": _exported_cv_quality(manifest["search"]),
        "columns": {c["name"]: c["kind"] for c in manifest["data"]["schema"]},
        "learner": manifest["search"]["learner"],
        "metric": metric,
        "validation": manifest["metrics"]["validation_quality"],
        "best_baseline_validation": max(
            (b["search"]["validation_quality"] for b in baseline.values() if b.get("search", {}).get("feasible")),
            default=None,
        ),
        "held_out_metric": held_metric,
        "held_out": _held_out(held_metric, y_test, result.test_probabilities, k),
        "test_accuracy": manifest["metrics"]["test"]["accuracy"],
        "references": reference_scores,
        "references_cv": reference_cv,  # on the build's metric, the same folds as cv_quality
        "p99_us": manifest["budgets"]["measured"]["latency_p99_us"],
        "search_p99_us": next(
            t.latency_p99_us for t in result.search.trials if t.index == manifest["search"]["trial_index"]
        ),
        "size_bytes": manifest["budgets"]["measured"]["size_bytes"],
        "rejected_at_export": len(manifest["search"]["rejected_at_export"]),
        "wall_s": round(wall, 1),
        "artifact": str(result.artifact_dir),
    }


def emit(row: dict[str, Any], path: str | None, *, append: bool) -> None:
    """Print the result as JSON and, when ``path`` is given, write (or append) it there."""
    text = json.dumps(row) if append else json.dumps(row, indent=2)
    print(text)
    if path:
        with open(path, "a" if append else "w") as handle:
            handle.write(text + "\n")


def table_parser(prog: str, doc: str, *, time_budget_s: float) -> argparse.ArgumentParser:
    """The options every table benchmark takes: the table, its target, what to drop, the search time."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--drop", nargs="*", default=[])
    parser.add_argument("--time-budget-s", type=float, default=time_budget_s)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = table_parser("python -m benchmarks.tables", __doc__, time_budget_s=60.0)
    parser.add_argument("--date-column", nargs="*", default=[])
    parser.add_argument("--metric", default="roc_auc")
    parser.add_argument("--seed", type=int, default=0, help="the build's seed: its split, search and references")
    parser.add_argument("--cv-folds", type=int, default=5, help="the build's --cv-folds (0: choose on the holdout)")
    parser.add_argument("--out", default="/tmp/edgeseg-tables")
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)
    emit(run(args), args.json, append=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
