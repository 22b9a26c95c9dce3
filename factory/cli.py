"""``edgeseg-factory``: build a signed segment classifier from a customer table.

    edgeseg-factory build --data customers.csv --target segment --drop ID
    edgeseg-factory build-default            # bundled Online Retail, future value tier
    edgeseg-factory build-default --labels clusters      # ... discovered, named segments
    edgeseg-factory build --data t.csv --labels few --target segment  # a few labels, spread

Errors print one line naming the problem and exit with status 2 (bad input or no model within
budget) or 1 (unexpected); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory._settings import (
    DEFAULT_LATENCY_BUDGET_US,
    DEFAULT_LEARNERS,
    DEFAULT_METRIC,
    DEFAULT_OUT_DIR,
    DEFAULT_SEED,
    DEFAULT_SIZE_BUDGET_KB,
    DEFAULT_TIME_BUDGET_S,
    METRICS,
)

__all__ = ["main"]


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--latency-budget-us",
        type=float,
        default=DEFAULT_LATENCY_BUDGET_US,
        help="p99 single-row latency budget on the target device (default %(default)s)",
    )
    parser.add_argument(
        "--size-budget-kb",
        type=float,
        default=DEFAULT_SIZE_BUDGET_KB,
        help="artifact size budget in KiB (default %(default)s)",
    )
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=DEFAULT_TIME_BUDGET_S,
        help="AutoML search time in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--metric", choices=METRICS, default=DEFAULT_METRIC, help="quality the search optimises (default %(default)s)"
    )
    parser.add_argument(
        "--learners", nargs="+", default=list(DEFAULT_LEARNERS), help="FLAML learners to search (default: %(default)s)"
    )
    parser.add_argument(
        "--device-profile",
        type=Path,
        default=None,
        help="device profile JSON from 'edge-runtime calibrate' (scales latency)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="artifact root; the artifact goes to OUT/NAME/VERSION (default %(default)s)",
    )
    parser.add_argument("--name", default=None, help="model name (default: from the data file)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument(
        "--key-dir",
        type=Path,
        default=None,
        help="signing key folder (default $EDGESEG_KEY_DIR or ~/.config/edgeseg/keys)",
    )
    parser.add_argument(
        "--numeric-imputer",
        choices=("median", "knn"),
        default="median",
        help="how missing numbers are filled, in training and in the graph (default %(default)s)",
    )
    parser.add_argument(
        "--n-segments",
        type=int,
        default=None,
        help="--labels clusters: number of segments (default: chosen by the criterion over k=3..8)",
    )
    parser.add_argument(
        "--cluster-method",
        choices=("kmeans", "gmm"),
        default="kmeans",
        help="--labels clusters: k-means with silhouette, or Gaussian mixture with BIC (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg-factory", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build from a labelled customer table (CSV/Parquet)")
    build.add_argument("--data", type=Path, required=True, help="CSV, TSV or Parquet file")
    build.add_argument(
        "--target",
        default=None,
        help="label column (required unless --labels clusters, where it names the new column; default 'segment')",
    )
    build.add_argument(
        "--labels",
        choices=("given", "clusters", "few"),
        default="given",
        help="given: --target as is; clusters: discover segments; few: spread the labels of a partly filled "
        "--target (default %(default)s)",
    )
    build.add_argument(
        "--dormant-days",
        type=float,
        default=30,
        help="--labels clusters: recency_days above this is dormant when the table has no is_dormant column",
    )
    build.add_argument("--drop", nargs="+", default=[], metavar="COL", help="columns that are not inputs")
    build.add_argument("--id-column", default=None, help="customer id column (dropped; devices pseudonymise it)")
    build.add_argument("--sep", default=None, help="CSV separator (default: sniffed)")
    _add_search_options(build)
    default = commands.add_parser(
        "build-default", help="build the bundled job: Online Retail, 90-day future value tier"
    )
    default.add_argument("--horizon-days", type=int, default=90, help="future window for the tier label")
    default.add_argument("--dormant-days", type=int, default=30, help="no purchase in this many days = dormant")
    default.add_argument(
        "--labels",
        choices=("tier", "clusters"),
        default="tier",
        help="tier: 90-day future value tier; clusters: discover segments of the RFM+X table (default %(default)s)",
    )
    _add_search_options(default)
    return parser


def _summary(result: Any, console: Any) -> None:
    from rich.table import Table

    manifest = result.manifest
    measured = manifest["budgets"]["measured"]
    budgets = manifest["budgets"]
    search = manifest["search"]
    parity = manifest["parity"]
    metric = manifest["metrics"]["metric"]
    test = manifest["metrics"]["test"]
    table = Table(title=f"built {manifest['model_version']}", show_header=False)
    table.add_row(
        "learner",
        f"{search['learner']} (trial {search['trial_index']} of {search['trials']}, "
        f"{search['feasible_trials']} within budget)",
    )
    table.add_row("quality (test)", f"{metric} {test[metric]:.4f} · accuracy {test['accuracy']:.4f}")
    table.add_row(
        "latency",
        f"p50 {measured['latency_p50_us']:.1f} µs · p99 {measured['latency_p99_us']:.1f} µs "
        f"(budget {budgets['latency_p99_us']:g})",
    )
    table.add_row("size", f"{measured['size_bytes']:,} bytes (budget {budgets['size_bytes']:,})")
    table.add_row(
        "parity",
        f"labels {parity['label_agreement']:.2%} · max Δp {parity['max_abs_prob_diff']:.1e} on {parity['rows']} rows",
    )
    table.add_row("search time", f"{manifest['search']['wall_time_s']:.1f} s")
    segments = manifest.get("segments")
    if segments:
        counts = ", ".join(f"{name} {n}" for name, n in segments["counts"].items())
        table.add_row(
            "segments",
            f"k={segments['chosen_k']} by {segments['criterion']} ({segments['method']}) + dormant rule: {counts}",
        )
    few = manifest.get("few_labels")
    if few:
        hold = few["holdout"]
        table.add_row(
            "few labels",
            f"{few['n_inferred']} inferred (median confidence {few['confidence']['median']:.2f}); held-out accuracy "
            f"labelled-only {hold['accuracy_labelled_only']:.4f} vs with propagated "
            f"{hold['accuracy_with_propagated']:.4f}",
        )
    baseline = manifest["metrics"].get("baseline") or {}
    if "logistic_regression" in baseline:
        table.add_row(
            "baselines (test)",
            f"logistic {baseline['logistic_regression']['test']['accuracy']:.4f} · depth-3 tree "
            f"{baseline['decision_tree']['test']['accuracy']:.4f} (accuracy)",
        )
    table.add_row("artifact", str(result.artifact_dir) + "  (card.html)")
    console.print(table)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from factory._build import build
    from factory._progress import SearchProgress

    console = Console(stderr=True)
    common: dict[str, Any] = dict(
        latency_budget_us=args.latency_budget_us,
        size_budget_kb=args.size_budget_kb,
        time_budget_s=args.time_budget_s,
        metric=args.metric,
        learners=args.learners,
        device_profile=args.device_profile,
        out_dir=args.out,
        seed=args.seed,
        key_dir=args.key_dir,
        numeric_imputer=args.numeric_imputer,
        n_segments=args.n_segments,
        cluster_method=args.cluster_method,
    )
    if args.command == "build-default" and args.labels == "clusters":
        from factory.segments import build_segment_table

        console.print("[bold]default job[/]: UCI Online Retail → RFM+X customer features → discovered segments")
        table, info = build_segment_table(dormant_days=args.dormant_days)
        console.print(f"  cutoff {info['cutoff']} · {len(table)} customers · dormant {info['dormant_customers']}")
        inputs: dict[str, Any] = dict(
            data=table,
            target="segment",
            labels="clusters",
            dormant_days=args.dormant_days,
            id_column="customer_id",
            name=args.name or "retail-segments",
            data_report=_jsonable(info),
            source_name="online_retail.parquet",
        )
    elif args.command == "build-default":
        from factory.features import build_value_tier_table

        console.print("[bold]default job[/]: UCI Online Retail → RFM+X customer features → 90-day value tier")
        table, info = build_value_tier_table(horizon_days=args.horizon_days, dormant_days=args.dormant_days)
        for line in info["cleaning"].lines() if hasattr(info.get("cleaning"), "lines") else []:
            console.print(f"  {line}")
        console.print(f"  cutoff {info['cutoff']} · {len(table)} customers · dormant {info['dormant_customers']}")
        inputs = dict(
            data=table,
            target="value_tier",
            id_column="customer_id",
            name=args.name or "retail-tier",
            label_rule=info["thresholds"],
            data_report=_jsonable(info),
            source_name="online_retail.parquet",
        )
    else:
        inputs = dict(
            data=args.data,
            target=args.target,
            drop=args.drop,
            id_column=args.id_column,
            name=args.name,
            sep=args.sep,
            labels=args.labels,
            dormant_days=args.dormant_days,
        )
    if args.quiet:
        result = build(**inputs, **common)
    else:
        with SearchProgress(args.time_budget_s, console=console) as progress:
            result = build(**inputs, **common, progress=progress)
    _summary(result, Console())
    return 0


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from factory.errors import FactoryError

    logging.getLogger("flaml").setLevel(logging.ERROR)
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        return _run(args)
    except FactoryError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edgeseg-factory: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeseg-factory: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence for a one-line error
        if args.debug:
            traceback.print_exc()
        print(f"edgeseg-factory: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
