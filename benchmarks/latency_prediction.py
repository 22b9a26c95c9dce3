"""Does the latency the search measures predict the artifact's re-measure? (issue 13)

    .venv/bin/python -m benchmarks.latency_prediction --data T.csv --target Y [--drop ID]
        [--time-budget-s 20] [--top 10]

Runs the search stage on a table, then times each of the ``top`` feasible candidates' graphs
again exactly as the verify stage times an artifact (``measure_artifact``: 5 rounds of 1000
single-row runs, median round, fresh session, the same rows with missing and unseen values) and
prints search p99, artifact p99 and their ratio per candidate, with the median ratio. A wall-clock
measurement on a shared machine: read it as a benchmark, never as a test assertion.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edge_runtime.session import make_session
    from factory import BuildConfig
    from factory.stages import device_timing, load_data, make_labels, measure_artifact, search_models, split_data

    config = BuildConfig(target=args.target, drop=args.drop, time_budget_s=args.time_budget_s)
    dataset = split_data(make_labels(load_data(args.data, config), config), config)
    searched = search_models(dataset, config)
    rows: list[dict[str, Any]] = []
    for candidate in searched.search.candidates[: args.top]:
        context = searched.context  # timed as the device runs it (the float-only graph), like the search
        timed, feeds = device_timing(candidate.graph, context.latency_feeds, *context.widths)
        artifact = measure_artifact(make_session(timed), feeds, context.profile)
        trial = candidate.trial
        rows.append(
            {
                "trial": trial.index,
                "learner": trial.learner,
                "search_p99_us": round(trial.latency_p99_us, 2),
                "artifact_p99_us": round(artifact.p99_us, 2),
                "ratio": round(artifact.p99_us / trial.latency_p99_us, 3),
            }
        )
    ratios = [float(r["ratio"]) for r in rows]
    return {
        "inputs": {"num": len(dataset.schema.num), "cat": len(dataset.schema.cat)},
        "candidates": rows,
        "median_ratio": float(np.median(ratios)) if ratios else None,
        "max_ratio": max(ratios, default=None),
    }


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tables import emit, table_parser

    parser = table_parser("python -m benchmarks.latency_prediction", __doc__, time_budget_s=20.0)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args(argv)
    emit(run(args), args.json, append=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
