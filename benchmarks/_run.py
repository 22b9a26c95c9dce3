"""One benchmark run: every dataset through the same measurements, then one report.

Order per dataset: budgeted build (the edgeseg model) → unconstrained FLAML with the same time
→ the other contenders from the same fitted model → single-record rounds → batches → cold
start → sizes → the budget-table searches. Searches come last for the budget table so they
never overlap a timing; nothing runs in parallel inside this process.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._config import BenchConfig
from benchmarks._datasets import DATASETS, DatasetSpec
from benchmarks._external import CENTRAL_SCRIPT, EDGE_SCRIPT, FEATURES_SCALE_SCRIPT, FLEET_SCRIPT, run_script
from benchmarks._machine import load_average, machine_info

__all__ = ["REPO", "bench_dataset", "run_bench"]

TILL_SCRIPT = Path(__file__).resolve().parent / "till.py"  # the till's numbers (issue 11)

REPO = Path(__file__).resolve().parents[1]

Log = Callable[[str], None]


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 else None


def _dir_bytes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def bench_dataset(
    spec: DatasetSpec, cfg: BenchConfig, work: Path, key_dir: Path, public_key: Path, log: Log
) -> tuple[dict[str, Any], Path | None]:
    """Every measurement for one dataset; returns (results, artifact dir of the main build)."""
    from benchmarks._baselines import default_onnx_graph, fit_unconstrained_flaml, native_booster
    from benchmarks._builds import BuildRun, build_config, run_build
    from benchmarks._coldstart import measure_cold_start, write_pickles
    from benchmarks._contenders import Contenders, agreement, batch_runners, edge_breakdown, single_calls
    from benchmarks._job import batch_frame, prepare_job
    from benchmarks._pareto import budget_row, pareto_indices, trial_points
    from benchmarks._timing import measure_batch, measure_single
    from edge_runtime import Classifier
    from edge_runtime.artifact import MODEL_FILE

    out: dict[str, Any] = {"status": "ok"}
    started = time.perf_counter()
    dataset = spec.loader()
    out["data"] = {
        "description": dataset.description,
        "rows": len(dataset.table),
        "target": dataset.target,
        "id_column": dataset.id_column,
        "dropped": list(dataset.drop),
        "load_seconds": time.perf_counter() - started,
    }

    config = build_config(dataset, cfg, out_dir=work / "artifacts", key_dir=key_dir)

    def build(budget: float) -> BuildRun:
        return run_build(dataset, config, latency_budget_us=budget)

    # The model under test is the main budget's; if that build is refused (on a shared machine
    # the artifact's re-measured p99 can land over a tight budget), the next larger budget of the
    # table stands in, and the report says so. The refused build stays a "no model" row.
    builds: dict[float, BuildRun] = {}
    main = None
    for budget in [cfg.latency_budget_us, *sorted(b for b in cfg.budget_table_us if b > cfg.latency_budget_us)]:
        log(f"[{spec.name}] budgeted build: p99 <= {budget:g} µs, {cfg.time_budget_s:g} s search")
        builds[budget] = build(budget)
        if builds[budget].result is not None:
            main = builds[budget]
            break
        log(f"[{spec.name}] no model at {budget:g} µs: {builds[budget].error}"[:300])
    if main is None:
        first = builds[cfg.latency_budget_us]
        out["status"] = "no_model"
        out["note"] = f"no model met p99 <= {max(builds):g} µs: {first.error}"
        out["pareto"] = {"trials": trial_points(first.trials), "chosen_index": None}
        return out, None
    if main.latency_budget_us != cfg.latency_budget_us:
        out["model_note"] = (
            f"the p99 <= {cfg.latency_budget_us:g} µs build was refused ({builds[cfg.latency_budget_us].error}); "
            f"the contenders use the p99 <= {main.latency_budget_us:g} µs build"
        )[:1200]
    job = prepare_job(dataset, main, public_key, cfg.n_records)
    metrics, search, budgets = job.sections
    out["data"].update(
        inputs_num=len(job.num), inputs_cat=len(job.cat), classes=job.classes,
        n_train=len(job.train_idx), n_val=len(job.val_idx), n_test=len(job.test_idx),
    )  # fmt: skip
    out["build"] = {
        "artifact": str(job.artifact_dir.relative_to(work)),
        "model_version": job.manifest.model_version,
        "learner": search.learner,
        "learners": list(search.estimator_list),
        "config": dict(search.config),
        "trials": search.trials,
        "feasible_trials": search.feasible_trials,
        "search_wall_s": search.wall_time_s,
        "build_seconds": main.seconds,
        "metric": metrics.metric,
        "validation_quality": metrics.validation_quality,
        "test_quality": metrics.test.get(metrics.metric),
        "test_accuracy": metrics.test.get("accuracy"),
        "factory_latency_p50_us": budgets.measured.latency_p50_us,
        "factory_latency_p99_us": budgets.measured.latency_p99_us,
        "onnx_bytes": job.manifest.onnx_bytes,
        "budgets": {"latency_p99_us": main.latency_budget_us, "size_bytes": budgets.size_bytes},
    }

    log(f"[{spec.name}] unconstrained FLAML on the raw table, {cfg.time_budget_s:g} s")
    flaml = fit_unconstrained_flaml(job)
    out["flaml"] = {
        "learner": flaml.learner,
        "config": flaml.config,
        "test_quality": flaml.test_quality,
        "fit_seconds": flaml.fit_seconds,
        "train_rows": flaml.train_rows,
        "learners": flaml.learners,
        "note": "same learners, metric, time budget, seed and train+validation rows; FLAML's own preprocessing",
    }
    log(f"[{spec.name}] contenders: skl2onnx default graph, native booster, edge Classifier")
    graph = default_onnx_graph(job)
    booster = native_booster(job, cfg.seed)
    classifier = Classifier.load(job.artifact_dir, public_key, contract="lenient")  # test rows may hold gaps
    contenders = Contenders(job=job, classifier=classifier, flaml=flaml, graph=graph, booster=booster)
    out["agreement"] = agreement(contenders)
    out["booster_source"] = booster.source

    log(f"[{spec.name}] single record: {cfg.rounds} interleaved rounds")
    stats = measure_single(single_calls(contenders), cfg)
    reference = stats["edgeseg"]
    out["single_record"] = {
        name: {
            **s.to_dict(),
            "ratio_p50": _ratio(s.p50_us, reference.p50_us),
            "ratio_p99": _ratio(s.p99_us, reference.p99_us),
            "ratio_p99_9": _ratio(s.p99_9_us, reference.p99_9_us),
        }
        for name, s in stats.items()
    }

    log(f"[{spec.name}] physical floor: node visits, ns per visit, per-call overhead")
    from benchmarks.edge_floor import measure as measure_floor

    out["floor"] = measure_floor(
        job.artifact_dir, public_key, runs=cfg.max_calls, rows=max(cfg.batch_sizes), rounds=cfg.batch_rounds
    )

    out["batch"] = {}
    for rows in cfg.batch_sizes:
        log(f"[{spec.name}] batch of {rows:,} rows")
        frame = batch_frame(job, rows, cfg.seed + rows)
        measured = measure_batch(batch_runners(contenders, frame), rows, rounds=cfg.batch_rounds)
        edge_rate = measured["edgeseg"]["rows_per_s"]
        for values in measured.values():
            values["edgeseg_speedup"] = _ratio(edge_rate, values["rows_per_s"])
        out["batch"][str(rows)] = measured
        out.setdefault("edgeseg_batch_breakdown", {})[str(rows)] = edge_breakdown(contenders, frame, cfg.batch_rounds)
        del frame
        gc.collect()

    pickles = write_pickles(contenders, work / "pickles" / spec.name)
    files = _dir_bytes(job.artifact_dir)
    out["sizes"] = {
        "onnx_bytes": files.get(MODEL_FILE),
        "artifact_bytes": sum(files.values()),
        "artifact_files": files,
        "pickle_model_bytes": pickles["model"].stat().st_size,
        "pickle_pipeline_bytes": pickles["pipeline"].stat().st_size,
        "pickle_flaml_automl_bytes": pickles["automl"].stat().st_size,
        "pickle_booster_bytes": pickles["booster"].stat().st_size,
        "skl2onnx_default_bytes": len(graph.model_bytes),
    }
    log(f"[{spec.name}] cold start: {cfg.cold_runs} fresh processes per path")
    out["cold_start"] = measure_cold_start(contenders, pickles, cfg.cold_runs)

    del contenders, classifier, graph, booster, flaml
    gc.collect()
    for budget in cfg.budget_table_us:
        if budget not in builds:
            log(f"[{spec.name}] budget table: search at p99 <= {budget:g} µs")
            builds[budget] = build(budget)
    points = trial_points(main.trials)
    out["pareto"] = {
        "trials": points,
        "chosen_index": search.trial_index,
        "front_latency": pareto_indices(points, "latency_p99_us"),
        "front_size": pareto_indices(points, "size_bytes"),
        "latency_budget_us": main.latency_budget_us,
        "size_budget_bytes": budgets.size_bytes,
    }
    out["quality_under_budget"] = {
        "metric": job.metric,
        "time_budget_s": cfg.time_budget_s,
        "rows": [budget_row(b, builds[b], job.metric) for b in sorted(builds)],
        "unconstrained_flaml": {
            "learner": out["flaml"]["learner"],
            "test_quality": out["flaml"]["test_quality"],
            "single_record_p99_us": out["single_record"]["flaml_predict"]["p99_us"],
        },
    }
    out["seconds"] = time.perf_counter() - started
    return out, job.artifact_dir


def _plain(value: Any) -> Any:
    """JSON for numpy scalars (their Python value) and anything else (its text)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _new_report_dir(root: Path, moment: dt.datetime) -> Path:
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    folder, n = root / stamp, 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder


def run_bench(
    cfg: BenchConfig,
    *,
    datasets: Sequence[str],
    out_root: Path,
    argv: Sequence[str] = (),
    log: Log = print,
) -> Path:
    """Run the benchmark and write ``<out_root>/<UTC stamp>/`` (report.md/html, results.json, PNGs)."""
    from benchmarks._contenders import thread_settings
    from benchmarks._report import write_report
    from edge_runtime.artifact import PUBLIC_KEY_NAME
    from factory.signing import load_or_create_key

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ValueError(
            f"The 'datasets' parameter of run_bench must name datasets from {', '.join(DATASETS)}. "
            f"Got {unknown[0]!r} instead."
        )
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "meta": {
            "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": cfg.mode,
            "argv": list(argv),
            "config": cfg.to_dict(),
            "seeds": {"search": cfg.seed, "split": cfg.seed, "batch_sampling": "seed + batch rows"},
            "load_average_start": load_average(),
            "threads": thread_settings(os.cpu_count() or 1),
        },
        "machine": machine_info(REPO),
        "datasets": {},
    }
    selected = list(datasets)[: cfg.max_datasets] if cfg.max_datasets else list(datasets)
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        work = Path(tmp)
        key_dir = work / "keys"  # a throw-away signing key: the benchmark never touches a user's key
        load_or_create_key(key_dir)
        public_key = key_dir / PUBLIC_KEY_NAME
        edge_artifact: Path | None = None
        till_artifact: Path | None = None  # the default job's model: it has a feature program
        for name in selected:
            spec = DATASETS[name]
            missing = spec.missing_note()
            if missing:
                log(f"[{name}] skipped: {missing}")
                results["datasets"][name] = {"status": "skipped", "note": missing}
                continue
            try:
                results["datasets"][name], artifact = bench_dataset(spec, cfg, work, key_dir, public_key, log)
            except Exception as exc:  # one broken dataset must not lose the others' numbers
                log(f"[{name}] failed: {type(exc).__name__}: {exc}")
                results["datasets"][name] = {
                    "status": "failed",
                    "note": f"{type(exc).__name__}: {exc}"[:500],
                    "traceback": traceback.format_exc()[-3000:],
                }
                continue
            edge_artifact = edge_artifact or artifact
            till_artifact = artifact if name == "retail" else till_artifact
        log("edge runtime script (outbox, Runtime) and central ingest script")
        if edge_artifact is not None:
            edge_args = ["--artifact", str(edge_artifact), "--public-key", str(public_key)]
            results["edge_runtime"] = run_script(
                EDGE_SCRIPT, edge_args, mode=cfg.mode, timeout_s=cfg.external_timeout_s
            )
            if results["edge_runtime"].get("status") == "ok":
                results["edge_runtime"]["artifact_dataset"] = next(
                    k for k, v in results["datasets"].items() if v.get("status") == "ok"
                )
        else:
            results["edge_runtime"] = {"status": "skipped", "note": "no dataset produced an artifact"}
        if till_artifact is not None:  # transaction → segment at the till (issue 11)
            log("till: transaction → segment, log replay, a store's state (benchmarks/till.py)")
            till_args = ["--artifact", str(till_artifact), "--public-key", str(public_key)]
            results["till"] = run_script(TILL_SCRIPT, till_args, mode=cfg.mode, timeout_s=cfg.external_timeout_s)
        else:
            results["till"] = {"status": "skipped", "note": "the retail job produced no model"}
        results["central_ingest"] = run_script(
            CENTRAL_SCRIPT, list(cfg.central_script_args), mode=cfg.mode, timeout_s=cfg.external_timeout_s
        )
        from benchmarks.privacy_price import bench as privacy_price

        log("privacy: PSI and segment-mix error vs epsilon (benchmarks/privacy_price.py)")
        results["privacy"] = privacy_price(cfg.mode, log)
        if cfg.mode == "smoke":  # tests/central/test_central_fleet.py runs a small fleet instead
            results["central_fleet"] = {"status": "skipped", "note": "not in --smoke runs"}
        else:
            log("1,000 simulated devices against central --workers 2 (benchmarks/central_fleet.py)")
            results["central_fleet"] = run_script(
                FLEET_SCRIPT, [], mode=cfg.mode, timeout_s=max(cfg.external_timeout_s, 1800.0)
            )
        if cfg.mode == "smoke":  # minutes of Spark: the smoke run (a test) leaves it out
            results["features_scale"] = {"status": "skipped", "note": "not in --smoke runs"}
        else:
            log("feature building and search, pandas vs Spark local[2] (benchmarks/features_scale.py)")
            results["features_scale"] = run_script(  # 10 M lines on Spark take minutes: its own limit
                FEATURES_SCALE_SCRIPT, [], mode=cfg.mode, timeout_s=max(cfg.external_timeout_s, 7200.0)
            )
        # Temporary paths mean nothing once the run is over: name the folder instead.
        results = json.loads(json.dumps(results, default=_plain).replace(str(work), "$WORK"))
    finished = dt.datetime.now(dt.UTC)
    results["meta"]["finished_at"] = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    results["meta"]["seconds"] = (finished - started).total_seconds()
    results["meta"]["load_average_end"] = load_average()
    report_dir = _new_report_dir(out_root, started)
    write_report(results, report_dir)
    if results["privacy"].get("status") == "ok":  # privacy.md/.json/.png beside report.md
        from benchmarks.privacy_price import write as write_privacy

        write_privacy(results["privacy"], report_dir)
    log(f"report: {report_dir / 'report.md'}")
    return report_dir
