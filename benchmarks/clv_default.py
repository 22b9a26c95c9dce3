"""The default job against BG/NBD + Gamma-Gamma (the CLV approach a retail analyst would use).

    .venv/bin/python -m benchmarks.clv_default [--time-budget-s 60] [--json out.json]

Builds the default job (Online Retail, 90-day future value tier) and, on the *same* test
customers, predicts each one's tier from the transaction log before the cutoff with
``factory.clv`` (BG/NBD expected purchases x Gamma-Gamma mean spend, cut at the label's own
thresholds; fitted on every customer's pre-cutoff history, which holds no label). Prints both
models' macro-F1, accuracy and per-tier F1, so the report says where edgeseg beats the CLV
baseline and where not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pandas as pd


def run(time_budget_s: float, out_dir: str) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    from factory import build
    from factory.clv import clv_tiers, rfm_summary
    from factory.features import (
        AMOUNT,
        CUSTOMER_ID,
        TIMESTAMP,
        build_value_tier_table,
        default_log_path,
        load_transactions,
    )

    table, info = build_value_tier_table()
    thresholds = info["thresholds"]["thresholds"]
    cutoff = pd.Timestamp(info["cutoff"])
    horizon = float(info["thresholds"]["horizon_days"])
    result = build(
        table, target="value_tier", id_column="customer_id", name="retail-tier", out_dir=out_dir,
        time_budget_s=time_budget_s, source_name="online_retail.parquet", label_rule=info["thresholds"],
    )  # fmt: skip
    log, _ = load_transactions(default_log_path())
    log[CUSTOMER_ID] = log[CUSTOMER_ID].astype(str)
    summary = rfm_summary(log, cutoff, customer=CUSTOMER_ID, timestamp=TIMESTAMP, amount=AMOUNT)
    predicted, report = clv_tiers(summary, horizon, thresholds)
    test_ids = table[CUSTOMER_ID].iloc[result.split.test].to_numpy()
    truth = np.asarray(result.labels[result.split.test], dtype=object)
    clv = predicted.reindex(test_ids).fillna("lapsed").to_numpy(dtype=object)  # no purchase day: lapsed
    ours = np.asarray(result.test_predictions, dtype=object)
    classes = list(result.classes)

    def scores(predicted_tiers: np.ndarray) -> dict[str, Any]:
        per = f1_score(truth, predicted_tiers, labels=classes, average=None, zero_division=0)
        return {
            "macro_f1": float(f1_score(truth, predicted_tiers, labels=classes, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(truth, predicted_tiers)),
            "f1_per_tier": {c: round(float(v), 4) for c, v in zip(classes, per, strict=True)},
        }

    return {
        "test_customers": len(test_ids),
        "edgeseg": {"learner": result.manifest["search"]["learner"], **scores(ours)},
        "bg_nbd_gamma_gamma": {**scores(clv), **report},
        "cutoff": str(cutoff),
        "horizon_days": horizon,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clv_default", description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget-s", type=float, default=60.0)
    parser.add_argument("--out", default="/tmp/edgeseg-clv")
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args(argv)
    from benchmarks.tables import emit

    emit(run(args.time_budget_s, args.out), args.json, append=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
