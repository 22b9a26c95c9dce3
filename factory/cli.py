"""``edgeseg-factory``: build a signed segment classifier from a customer table.

    edgeseg-factory build --data customers.csv --target segment --drop ID
    edgeseg-factory build-default            # bundled Online Retail, future value tier
    edgeseg-factory build-default --labels clusters      # ... discovered, named segments
    edgeseg-factory build-default --engine spark --log logs/   # features and search on Spark
    edgeseg-factory build --data t.csv --labels few --target segment  # a few labels, spread
    edgeseg-factory inspect --data customers.csv --target churn   # how each column is read

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
from typing import TYPE_CHECKING, Any

from edge_runtime.artifact import CARD_HTML_FILE
from factory._config import BuildConfig, Group, Parameter, config_parameters
from factory._constraints import Interval, PathLike, StrOptions, StrSequence

if TYPE_CHECKING:  # the build machinery (pandas, sklearn, onnx) loads only when a build runs
    from factory._build import BuildResult
    from factory._schema import InputSchema

__all__ = ["main"]


def _argument(parameter: Parameter) -> dict[str, Any]:
    """argparse keywords for one BuildConfig parameter, derived from its declared constraints.

    Choices come from ``StrOptions``, lists from ``StrSequence``, the value type from
    ``Interval`` or ``PathLike``; range checks stay with BuildConfig, whose message is the
    one the user sees (one line, exit status 2).
    """
    default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
    shown = "" if default is None or default == [] else " (default: %(default)s)"
    kwargs: dict[str, Any] = {"dest": parameter.name, "default": default, "help": parameter.help + shown}
    for constraint in parameter.constraints:
        if isinstance(constraint, StrOptions):
            kwargs["choices"] = constraint.options
        elif isinstance(constraint, StrSequence):
            kwargs.update(nargs="+", metavar=parameter.name.upper().rstrip("S"))
            if constraint.options:
                kwargs["choices"] = constraint.options
                kwargs["help"] += f"; any of {', '.join(constraint.options)}"
        elif isinstance(constraint, Interval):
            kwargs["type"] = constraint.type
        elif isinstance(constraint, PathLike):
            kwargs["type"] = Path
    return kwargs


def _add_config_arguments(parser: argparse.ArgumentParser, group: Group, *, only: Sequence[str] = ()) -> None:
    """The BuildConfig options of ``group`` (or just those named in ``only``) as arguments."""
    for parameter in config_parameters():
        if (parameter.name in only) if only else parameter.group == group:
            parser.add_argument(parameter.flag, **_argument(parameter))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser, "search")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg-factory", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build from a labelled customer table (CSV/Parquet)")
    build.add_argument("--data", type=Path, required=True, help="CSV, TSV, Parquet or Excel (.xlsx, .xls) file")
    _add_config_arguments(build, "table")
    _add_run_options(build)
    default = commands.add_parser(
        "build-default", help="build the bundled job: Online Retail, 90-day future value tier"
    )
    default.add_argument("--horizon-days", type=int, default=90, help="future window for the tier label")
    default.add_argument(
        "--log",
        type=Path,
        default=None,
        help="transaction log: Parquet/CSV file or folder of part files (default: the bundled Online Retail)",
    )
    default.add_argument(
        "--labels",
        dest="job",
        choices=("tier", "clusters"),
        default="tier",
        help="tier: 90-day future value tier; clusters: discover segments of the RFM+X table (default %(default)s)",
    )
    _add_config_arguments(default, None, only=("dormant_days",))
    _add_run_options(default)
    inspect = commands.add_parser(
        "inspect", help="show how a table's columns would be read (type, why, missing share, distinct values)"
    )
    inspect.add_argument("--data", type=Path, required=True, help="CSV, TSV, Parquet or Excel (.xlsx, .xls) file")
    _add_config_arguments(
        inspect,
        None,
        only=("target", "drop", "id_column", "sep", "sheet", "date_columns", "reference_date"),
    )
    inspect.add_argument("--json", action="store_true", help="print the table as JSON")
    inspect.add_argument("--debug", action="store_true", help="show tracebacks")
    from factory.rollback import add_rollback_parser

    add_rollback_parser(commands)
    from factory.retrain import add_retrain_parser

    add_retrain_parser(commands)
    from factory.state_snapshot import add_state_snapshot_parser

    add_state_snapshot_parser(commands)
    return parser


def read_schema(
    data: Any,
    *,
    target: str | None,
    not_inputs: Sequence[str] = (),
    sep: str | None = None,
    sheet: str | None = None,
    date_columns: Sequence[str] = (),
    reference_date: str | None = None,
) -> tuple[InputSchema, tuple[str, ...]]:
    """How the build will read the table's input columns (identifiers shown, not refused), and
    notes on how the file itself was read (encoding, sheet, a saved index; factory._data)."""
    import datetime as dt

    import pandas as pd

    from factory._config import parse_date_columns
    from factory._data import ReadTable, datetimes_as_text, read_table
    from factory._schema import infer_schema
    from factory.errors import FactoryInputError

    if isinstance(data, pd.DataFrame):
        read = ReadTable(datetimes_as_text(data))
    else:
        read = read_table(data, sep=sep, sheet=sheet)
    raw = read.frame
    named = [c for c in [*([target] if target else []), *not_inputs] if c is not None]
    absent = [c for c in named if c not in raw.columns]
    if absent:
        raise FactoryInputError(
            f"column {absent[0]!r} is not in the data; columns are: {', '.join(map(str, raw.columns))}"
        )
    reference = None if reference_date is None else dt.datetime.fromisoformat(reference_date)
    schema = infer_schema(
        raw.drop(columns=named),
        date_columns=parse_date_columns(date_columns),
        reference_date=reference,
        refuse_identifiers=False,
    )
    return schema, read.notes


def _schema_table(schema: InputSchema, notes: Sequence[str], console: Any, title: str) -> None:
    from rich.table import Table

    from factory._schema import render_schema

    table = Table(title=title)
    for heading in ("column", "type", "missing", "distinct", "why"):
        table.add_column(heading, overflow="fold")
    for row in render_schema(schema):
        table.add_row(*row)
    console.print(table)
    _print_notes(notes)


def _print_notes(notes: Sequence[str]) -> None:
    """How the file was read, on stderr (``inspect --json`` keeps stdout for the JSON)."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _leak_warnings(data: Any, config: BuildConfig) -> list[str]:
    """Suspected leaks (factory._leaks) for ``inspect``, which runs no build; a build warns of
    them itself before its search (``build(warn=...)``)."""
    from factory._leaks import leak_warning
    from factory._stages import load_data, make_labels, split_data

    dataset = split_data(make_labels(load_data(data, config), config), config)
    return [leak_warning(leak) for leak in dataset.suspected_leaks]


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _inspect(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    schema, notes = read_schema(
        args.data,
        target=args.target,
        not_inputs=[*args.drop, *([args.id_column] if args.id_column else [])],
        sep=args.sep,
        sheet=args.sheet,
        date_columns=args.date_columns,
        reference_date=args.reference_date,
    )
    if args.json:
        print(json.dumps(schema.report(), indent=2))
        _print_notes(notes)
    else:
        _schema_table(schema, notes, Console(), f"{args.data}: {len(schema.columns)} model inputs")
    if args.target:  # inspect shows identifiers instead of refusing them: leave them out here too
        identifiers = [info.name for info in schema.columns_read if info.kind == "identifier"]
        config = BuildConfig(
            target=args.target, drop=[*args.drop, *identifiers], id_column=args.id_column, sep=args.sep,
            sheet=args.sheet, date_columns=args.date_columns, reference_date=args.reference_date,
        )  # fmt: skip
        for text in _leak_warnings(args.data, config):
            _print_warning(text)
    return 0


def _summary(result: BuildResult, console: Any) -> None:
    from rich.table import Table

    manifest = result.typed_manifest
    budgets, search, parity, metrics = manifest.budgets, manifest.search, manifest.parity, manifest.metrics
    assert budgets and search and parity and metrics, "the factory writes every section"
    measured, test, metric = budgets.measured, metrics.test, metrics.metric
    table = Table(title=f"built {manifest.model_version}", show_header=False)
    table.add_row(
        "learner",
        f"{search.learner} (trial {search.trial_index} of {search.trials}, {search.feasible_trials} within budget)",
    )
    table.add_row("quality (test)", f"{metric} {test[metric]:.4f} · accuracy {test['accuracy']:.4f}")
    table.add_row(
        "latency",
        f"p50 {measured.latency_p50_us:.1f} µs · p99 {measured.latency_p99_us:.1f} µs "
        f"(budget {budgets.latency_p99_us:g})",
    )
    table.add_row("size", f"{measured.size_bytes:,} bytes (budget {budgets.size_bytes:,})")
    table.add_row(
        "parity",
        f"labels {parity.label_agreement:.2%} · max Δp {parity.max_abs_prob_diff:.1e} on {parity.rows} rows",
    )
    table.add_row("search time", f"{search.wall_time_s:.1f} s")
    for note in (manifest.data or {}).get("notes", []):  # rows left out, encoding, sheet (factory._data)
        table.add_row("data", note)
    from factory._leaks import leak_warning

    for leak in (manifest.data or {}).get("suspected_leaks", []):
        table.add_row("[bold red]warning[/]", leak_warning(leak))
    segments = manifest.segments
    if segments:
        counts = ", ".join(f"{name} {n}" for name, n in segments["counts"].items())
        table.add_row(
            "segments",
            f"k={segments['chosen_k']} by {segments['criterion']} ({segments['method']}) + dormant rule: {counts}",
        )
    few = manifest.few_labels
    if few:
        hold = few["holdout"]
        table.add_row(
            "few labels",
            f"{few['n_inferred']} inferred (median confidence {few['confidence']['median']:.2f}); held-out accuracy "
            f"labelled-only {hold['accuracy_labelled_only']:.4f} vs with propagated "
            f"{hold['accuracy_with_propagated']:.4f}",
        )
    from factory.explain._baseline import display_name

    baseline = metrics.baseline or {}
    if baseline:  # our own baselines were candidates: what they scored where the choice was made
        shown = []
        for name, entry in baseline.items():
            found = entry.get("search") or {}
            if not found:  # not a candidate (the default job's CLV baseline): shown on test below
                theirs = entry["test"]
                table.add_row(
                    f"{display_name(name)} (test)",
                    f"{metric} {theirs.get(metric, float('nan')):.4f} · accuracy {theirs['accuracy']:.4f} "
                    f"(exported {test[metric]:.4f} · {test['accuracy']:.4f})",
                )
                continue
            quality = found.get("validation_quality")
            shown.append(f"{display_name(name)} {'—' if quality is None else f'{quality:.4f}'}")
        chosen = metrics.validation_quality
        exported = f"{search.learner.removeprefix('baseline_').replace('_', ' ')} " + (
            "—" if chosen is None else f"{chosen:.4f}"
        )
        table.add_row("baselines (validation)", f"{metric}: " + " · ".join(shown) + f"; exported {exported}")
    selection = search.selection or {}
    if selection.get("method") == "cv":  # the rerank stage ordered the candidates: what decided
        ranked = {r["trial_index"]: r for r in selection["ranked"]}
        mine = ranked.get(search.trial_index, {}).get("cv_quality")
        theirs = [
            f"{display_name(name)} {entry['search']['cv_quality']:.4f}"
            for name, entry in baseline.items()
            if (entry.get("search") or {}).get("cv_quality") is not None
        ]
        table.add_row(
            f"chosen by {selection['folds']}-fold CV",
            f"{len(ranked)} best candidates re-scored on {selection['rows']:,} rows in {selection['time_s']:.1f} s; "
            f"exported {'—' if mine is None else f'{mine:.4f}'}" + (" · " + " · ".join(theirs) if theirs else ""),
        )
    console.print(table)
    # The path on its own line, never wrapped or cut at the terminal's width: users copy it.
    console.print(f"artifact (model card: {CARD_HTML_FILE}):", highlight=False)
    console.print(str(result.artifact_dir), soft_wrap=True, highlight=False, markup=False)


def _default_job(args: argparse.Namespace, console: Any) -> tuple[Any, dict[str, Any]]:
    """The bundled Online Retail table and the BuildConfig fields its job implies."""
    common = {"id_column": "customer_id", "source_name": args.log.name if args.log else "online_retail.parquet"}
    engine = {"engine": args.engine, "spark_master": args.spark_master}  # where the log becomes features
    source = f"{args.log}" if args.log else "UCI Online Retail"
    on = f" (on Spark, {args.spark_master})" if args.engine == "spark" else ""
    if args.job == "clusters":
        from factory.segments import build_segment_table

        console.print(f"[bold]default job[/]: {source} → RFM+X customer features{on} → discovered segments")
        table, info = build_segment_table(args.log, dormant_days=args.dormant_days, **engine)
        job = {"target": "segment", "labels": "clusters", "name": args.name or "retail-segments"}
    else:
        from factory.features import CleaningReport, build_value_tier_table

        console.print(f"[bold]default job[/]: {source} → RFM+X customer features{on} → 90-day value tier")
        table, info = build_value_tier_table(
            args.log, horizon_days=args.horizon_days, dormant_days=args.dormant_days, **engine
        )
        cleaning = info.get("cleaning")
        for line in cleaning.lines() if isinstance(cleaning, CleaningReport) else []:
            console.print(f"  {line}")
        job = {"target": "value_tier", "name": args.name or "retail-tier", "label_rule": info["thresholds"]}
        from factory.clv import default_job_baseline

        args.before_write = default_job_baseline(table, info)  # the card's BG/NBD + Gamma-Gamma baseline
    console.print(f"  cutoff {info['cutoff']} · {len(table)} customers · dormant {info['dormant_customers']}")
    return table, {**common, **job, "data_report": _jsonable(info)}


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from factory._build import build
    from factory._progress import SearchProgress

    console = Console(stderr=True)
    # Every BuildConfig option this command offers, under its own name (argparse dest).
    options = {p.name: getattr(args, p.name) for p in config_parameters() if hasattr(args, p.name)}
    if args.command == "build-default":
        data, job = _default_job(args, console)
        options.update(job)
    else:
        data = args.data
    config = BuildConfig(**options)
    if not args.quiet:  # the inferred schema, before the search (a refused identifier shows here too)
        schema, notes = read_schema(
            data,
            target=config.target if config.labels != "clusters" else None,
            not_inputs=config.not_inputs,
            sep=config.sep,
            sheet=config.sheet,
            date_columns=config.date_columns,
            reference_date=config.reference_date,
        )
        _schema_table(schema, notes, console, "how the table is read")
    hook = getattr(args, "before_write", None)  # build-default: the CLV baseline joins the card
    if args.quiet:
        result = build(data, config, before_write=hook)
    else:
        with SearchProgress(config.time_budget_s, console=console) as progress:
            result = build(data, config, progress=progress, before_write=hook, warn=_print_warning)
    _summary(result, Console())
    return 0


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "rollback-order":
        from factory.rollback import run_rollback_order

        return run_rollback_order(args)
    if args.command == "retrain":
        from factory.retrain import run_retrain

        return run_retrain(args)
    if args.command == "state-snapshot":
        from factory.state_snapshot import run_state_snapshot

        return run_state_snapshot(args)
    from factory.errors import FactoryError

    logging.getLogger("flaml").setLevel(logging.ERROR)
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        return _inspect(args) if args.command == "inspect" else _run(args)
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
