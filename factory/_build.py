"""build(): customer table in, verified and signed artifact out (the factory's one entry point).

Steps: load and check → infer schema → stratified train/validation/test split → fit our
preprocessing on train → budgeted FLAML search → for the best feasible candidates in order:
export the whole graph, run the parity gate, re-measure latency and size on the artifact → write
the first one that passes everything, atomically and signed. Nothing is written before every
check has passed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from factory._artifact import write_artifact
from factory._card import render_card, render_card_html
from factory._data import check_target, load_table
from factory._latency import DeviceProfile, measure_latency_rounds
from factory._manifest import (
    FORMAT_VERSION,
    frame_fingerprint,
    golden_records,
    input_specs,
    library_versions,
    reference_statistics,
    to_record,
)
from factory._parity import check_parity, onnx_predict, stress_rows
from factory._schema import InputSchema, infer_schema, make_preprocessor, normalise_frame
from factory._search import Budgets, Candidate, SearchResult, Trial, run_search, score
from factory._settings import (
    ARTIFACT_LATENCY_ROUNDS,
    ARTIFACT_LATENCY_RUNS,
    DEFAULT_LATENCY_BUDGET_US,
    DEFAULT_LEARNERS,
    DEFAULT_METRIC,
    DEFAULT_OUT_DIR,
    DEFAULT_SEED,
    DEFAULT_SIZE_BUDGET_KB,
    DEFAULT_TIME_BUDGET_S,
    LATENCY_WARMUP_RUNS,
    METRICS,
    MISSING_TOKEN,
    TEST_FRACTION,
    VALIDATION_FRACTION,
)
from factory.errors import BudgetError, FactoryInputError, ParityError
from factory.explain import reference_record
from factory.signing import load_or_create_key

__all__ = ["BuildResult", "build"]

ProgressHook = Callable[[Trial, "Trial | None", float], None]


@dataclass
class BuildResult:
    """What build() made: where the artifact is, its manifest, and the whole search."""

    artifact_dir: Path
    manifest: dict[str, Any]
    search: SearchResult
    native_pipeline: Any = None  # sklearn Pipeline(preprocess, model) the artifact reproduces

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])


def _positive(owner: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FactoryInputError(f"The {name!r} parameter of {owner} must be > 0. Got {value!r} instead.")
    return float(value)


def _check_options(metric: str, learners: Sequence[str], latency: float, size_kb: float, time_s: float) -> None:
    _positive("build", "latency_budget_us", latency)
    _positive("build", "size_budget_kb", size_kb)
    _positive("build", "time_budget_s", time_s)
    if metric not in METRICS:
        raise FactoryInputError(
            f"The 'metric' parameter of build must be one of {', '.join(METRICS)}. Got {metric!r} instead."
        )
    if not learners:
        raise FactoryInputError("The 'learners' parameter of build must name at least one learner.")


LABEL_SOURCES = ("given", "clusters", "few")
NUMERIC_IMPUTERS = ("median", "knn")


def _check_label_options(labels: str, target: str | None, numeric_imputer: str) -> None:
    if labels not in LABEL_SOURCES:
        raise FactoryInputError(
            f"The 'labels' parameter of build must be one of {', '.join(LABEL_SOURCES)}. Got {labels!r} instead."
        )
    if labels != "clusters" and not target:
        raise FactoryInputError(f"--labels {labels} needs the label column: give --target")
    if numeric_imputer not in NUMERIC_IMPUTERS:
        raise FactoryInputError(
            f"The 'numeric_imputer' parameter of build must be one of {', '.join(NUMERIC_IMPUTERS)}. "
            f"Got {numeric_imputer!r} instead."
        )


def _new_version(out_dir: Path, name: str) -> str:
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0)
    while True:
        version = moment.strftime("%Y%m%dT%H%M%SZ")
        if not (out_dir / name / version).exists():
            return version
        moment += dt.timedelta(seconds=1)


def _split(frame: pd.DataFrame, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.arange(len(frame))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=VALIDATION_FRACTION / (1 - TEST_FRACTION), stratify=labels[rest], random_state=seed
    )
    return train, val, test


def _test_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    k = len(classes)
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=list(range(k)), zero_division=0
    )
    result: dict[str, Any] = {m: score(m, y_true, proba, k)[0] for m in METRICS}
    result = {m: (None if isinstance(v, float) and math.isnan(v) else v) for m, v in result.items()}
    result["per_class"] = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    result["confusion_matrix"] = confusion_matrix(y_true, predicted, labels=list(range(k))).tolist()
    return result


def _segment_profiles(train: pd.DataFrame, y: np.ndarray, schema: InputSchema, classes: list[str]) -> dict[str, Any]:
    profiles: dict[str, Any] = {}
    for i, name in enumerate(classes):
        rows = train[y == i]
        profiles[name] = {
            "count": int(len(rows)),
            "share": float(len(rows) / len(train)),
            "medians": {c: float(rows[c].median()) for c in schema.num if rows[c].notna().any()},
            "top_categories": {c: str(rows[c].mode().iloc[0]) for c in schema.cat if rows[c].notna().any()},
        }
    return profiles


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def build(
    data: str | Path | pd.DataFrame,
    *,
    target: str | None = None,
    drop: Sequence[str] = (),
    id_column: str | None = None,
    name: str | None = None,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    latency_budget_us: float = DEFAULT_LATENCY_BUDGET_US,
    size_budget_kb: float = DEFAULT_SIZE_BUDGET_KB,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    metric: str = DEFAULT_METRIC,
    device_profile: str | Path | DeviceProfile | None = None,
    learners: Sequence[str] = DEFAULT_LEARNERS,
    seed: int = DEFAULT_SEED,
    sep: str | None = None,
    key_dir: str | Path | None = None,
    progress: ProgressHook | None = None,
    label_rule: dict[str, Any] | None = None,
    data_report: dict[str, Any] | None = None,
    source_name: str | None = None,
    labels: str = "given",
    n_segments: int | None = None,
    cluster_method: str = "kmeans",
    dormant_days: float | None = 30,
    numeric_imputer: str = "median",
) -> BuildResult:
    """Search, export, verify and sign a segment classifier for a labelled customer table.

    ``data`` is a path (CSV/TSV/Parquet) or a DataFrame; ``target`` the label column; ``drop``
    columns that must not be inputs; ``id_column`` the customer id (dropped from the inputs and
    named in the manifest so devices pseudonymise it). Raises FactoryInputError, BudgetError or
    ParityError; in every error case nothing is written.

    ``labels`` says where the classes come from: ``"given"`` (the ``target`` column),
    ``"clusters"`` (segments discovered by ``factory.segments.discover_segments``: dormant rule
    with ``dormant_days``, ``cluster_method`` k-means/silhouette or GMM/BIC, ``n_segments``
    overrides the criterion; ``target`` names the new column, default ``"segment"``) or
    ``"few"`` (the ``target`` column is partly empty; ``factory.labels.propagate_labels`` fills
    it). ``numeric_imputer`` is ``"median"`` or ``"knn"`` (see ``factory._schema``).
    """
    _check_options(metric, learners, latency_budget_us, size_budget_kb, time_budget_s)
    _check_label_options(labels, target, numeric_imputer)
    profile = (
        device_profile
        if isinstance(device_profile, DeviceProfile)
        else DeviceProfile.load(device_profile)
        if device_profile is not None
        else DeviceProfile()
    )
    if isinstance(data, pd.DataFrame):
        raw = data.copy()
        source = source_name or "DataFrame"
    else:
        raw = load_table(data, sep=sep)
        source = source_name or Path(data).name
    unknown = [c for c in [*drop, *([id_column] if id_column else [])] if c not in raw.columns]
    if unknown:
        raise FactoryInputError(
            f"column {unknown[0]!r} (to drop) is not in the data; columns are: {', '.join(map(str, raw.columns))}"
        )
    fingerprint = frame_fingerprint(raw)  # of the data as given, before any label is made
    not_inputs = [*drop, *([id_column] if id_column else [])]
    segments_report: dict[str, Any] | None = None
    few_report: dict[str, Any] | None = None
    segment_profiles: dict[str, Any] | None = None
    if labels == "clusters":
        from factory.segments import discover_segments

        target = target or "segment"
        if target in raw.columns:
            raise FactoryInputError(
                f"--labels clusters writes the segment into column {target!r}, which the data already has; "
                "name another with --target"
            )
        found = discover_segments(
            raw, exclude=not_inputs, n_segments=n_segments, method=cluster_method, dormant_days=dormant_days, seed=seed
        )
        raw[target] = found.labels.to_numpy()
        label_rule = label_rule or found.label_rule
        segments_report = found.report
        segment_profiles = found.profiles
    elif labels == "few":
        from factory.labels import propagate_labels

        assert target is not None
        few = propagate_labels(raw, target, exclude=not_inputs, seed=seed)
        raw[target] = few.labels.to_numpy()
        few_report = few.report
        label_rule = label_rule or {"kind": "few labels", "method": few.report["method"]}
    assert target is not None
    labels_series = check_target(raw, target)
    features = raw.drop(columns=[target, *drop, *([id_column] if id_column else [])])
    schema = infer_schema(features)
    frame = normalise_frame(features, schema)
    classes = sorted(labels_series.unique().tolist())
    y = labels_series.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    train_idx, val_idx, test_idx = _split(frame, y, seed)
    train, val, test = frame.iloc[train_idx], frame.iloc[val_idx], frame.iloc[test_idx]

    preprocessor = make_preprocessor(schema, numeric_imputer=numeric_imputer, seed=seed).fit(train)
    train_matrix, val_matrix = preprocessor.transform(train), preprocessor.transform(val)
    layout_rows = val.iloc[: min(64, len(val))]
    from edge_runtime._encoding import InputLayout, encode_columns

    layout = InputLayout(num=schema.num, cat=schema.cat, missing_token=MISSING_TOKEN)
    latency_feeds = encode_columns(layout, {c: layout_rows[c].tolist() for c in schema.columns}, len(layout_rows))
    budgets = Budgets(latency_p99_us=float(latency_budget_us), size_bytes=int(size_budget_kb * 1024))

    search = run_search(
        metric=metric,
        budgets=budgets,
        profile=profile,
        preprocessor=preprocessor,
        schema=schema,
        classes=classes,
        train=(train_matrix, y[train_idx]),
        validation=(val_matrix, y[val_idx]),
        latency_feeds=latency_feeds,
        learners=learners,
        time_budget_s=time_budget_s,
        seed=seed,
        progress=progress,
    )
    # FLAML always finishes its first trial, however small the budget; a budget that the first
    # trial alone overran was too small to search anything, so it is refused, not honoured.
    first_trial_s = search.trials[0].elapsed_s if search.trials else math.inf
    if first_trial_s > time_budget_s:
        raise FactoryInputError(
            f"time budget {time_budget_s:g} s is too small for a single trial on {len(train)} rows "
            f"(the first trial took {first_trial_s:.2f} s); raise --time-budget-s"
        )
    chosen, parity, latency, model_bytes, rejected_at_export = _first_verified(
        search, preprocessor, test, schema, classes, budgets, profile, latency_feeds, seed
    )

    session_proba = onnx_predict(_session(model_bytes), test, schema)[1]
    explanations = _explanations(
        chosen.model, preprocessor, train_matrix, y[train_idx], test, y[test_idx], schema, classes, seed
    )
    preprocessing = _preprocessing_report(
        numeric_imputer, chosen.model, train, y[train_idx], test, y[test_idx], schema, metric, classes, seed
    )
    name = name or Path(source).stem.lower().replace("_", "-")
    out_dir = Path(out_dir)
    version = _new_version(out_dir, name)
    stressed, _, _ = stress_rows(test, schema, 4, seed)
    golden_frame = golden_records(test, stressed, schema, seed)
    golden_labels, golden_proba = onnx_predict(_session(model_bytes), golden_frame, schema)
    columns_step = preprocessor.named_steps["columns"]
    categories = (
        [list(map(str, c)) for c in columns_step.named_transformers_["cat"].named_steps["encode"].categories_]
        if schema.cat
        else []
    )
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "model_version": f"{name}/{version}",
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": "classification",
        "id_field": id_column or "customer_id",
        "input_layout": {"num": schema.num, "cat": schema.cat, "missing_token": MISSING_TOKEN},
        "inputs": input_specs(train, schema, categories),
        "target": {
            "name": target,
            "classes": classes,
            "profiles": segment_profiles or _segment_profiles(train, y[train_idx], schema, classes),
            "label_rule": label_rule,
        },
        "metrics": {
            "metric": metric,
            "validation_quality": chosen.trial.quality,
            "test": _test_metrics(y[test_idx], session_proba, classes),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "n_test": len(test_idx),
            "baseline": explanations["baseline"],
        },
        "budgets": {
            "latency_p99_us": float(latency_budget_us),
            "size_bytes": budgets.size_bytes,
            "measured": {
                "latency_p50_us": latency.p50_us,
                "latency_p99_us": latency.p99_us,
                "runs": latency.runs,
                "size_bytes": len(model_bytes),
                "device_profile": profile.to_dict(),
                "scale": profile.scale,
            },
            "met": True,
        },
        "search": {
            "learner": chosen.trial.learner,
            "config": chosen.trial.config,
            "trial_index": chosen.trial.index,
            "rejected_at_export": rejected_at_export,
            "trials": len(search.trials),
            "feasible_trials": sum(t.feasible for t in search.trials),
            "time_budget_s": float(time_budget_s),
            "wall_time_s": search.wall_time_s,
            "seed": seed,
            "estimator_list": list(learners),
        },
        "parity": parity.to_dict(),
        "preprocessing": preprocessing,
        "explain": {
            "global_importance": explanations["global_importance"],
            "reference_record": reference_record(train, schema),
            "device_method": (
                "occlusion on the exported graph: P(chosen segment | record) minus P(chosen segment | record "
                "with one input set to reference_record), one batched run of n_inputs + 1 rows "
                "(edge_runtime.explain.explain_record)"
            ),
        },
        "reference": reference_statistics(train, schema),
        "golden_samples": [
            {
                "record": to_record(row, schema),
                "label": str(golden_labels[i]),
                "probabilities": [float(p) for p in golden_proba[i]],
            }
            for i, (_, row) in enumerate(golden_frame.iterrows())
        ],
        "libraries": library_versions(),
        "data": {
            "source": source,
            "rows": int(len(raw)),
            "fingerprint": fingerprint,
            "report": data_report,
        },
    }
    if segments_report is not None:
        manifest["segments"] = segments_report
    if few_report is not None:
        manifest["few_labels"] = few_report
    manifest = _json_safe(manifest)
    trials = [_json_safe(t.to_dict()) for t in search.trials]
    log_lines = "".join(json.dumps(t, sort_keys=True) + "\n" for t in trials)
    key = load_or_create_key(Path(key_dir) if key_dir is not None else None)
    destination = out_dir / name / version
    provisional = dict(manifest, onnx_sha256="", onnx_bytes=len(model_bytes))
    written = write_artifact(
        destination,
        model_bytes=model_bytes,
        manifest=manifest,
        key=key,
        extra_files={
            "card.md": render_card(provisional).encode("utf-8"),
            "card.html": render_card_html(provisional, trials).encode("utf-8"),
            "search_log.jsonl": log_lines.encode("utf-8"),
        },
    )
    from sklearn.pipeline import Pipeline

    native = Pipeline([*preprocessor.steps, ("model", chosen.model)])
    return BuildResult(artifact_dir=destination, manifest=written, search=search, native_pipeline=native)


# SHAP on at most this many test rows: enough for a stable global ranking, bounded in time
# (TreeExplainer on a 100-tree forest is milliseconds per row).
SHAP_ROWS = 200


def _explanations(
    model: Any,
    preprocessor: Any,
    train_matrix: np.ndarray,
    y_train: np.ndarray,
    test: pd.DataFrame,
    y_test: np.ndarray,
    schema: InputSchema,
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    """Global SHAP importance of the chosen model and the interpretable baselines (for the card)."""
    from factory.explain import global_importance, interpretable_baselines

    test_matrix = preprocessor.transform(test)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(test_matrix), size=min(SHAP_ROWS, len(test_matrix)), replace=False)
    background = train_matrix[rng.choice(len(train_matrix), size=min(SHAP_ROWS, len(train_matrix)), replace=False)]
    try:
        importance: dict[str, Any] = global_importance(model, test_matrix[rows], schema.columns, background=background)
    except Exception as exc:  # an explainer gap must not cost the user the model; the card says so
        importance = {"method": None, "error": f"{type(exc).__name__}: {exc}"[:300], "ranking": []}
    baseline = interpretable_baselines((train_matrix, y_train), (test_matrix, y_test), schema.columns, classes, seed)
    return {"global_importance": importance, "baseline": baseline}


def _preprocessing_report(
    numeric_imputer: str,
    model: Any,
    train: pd.DataFrame,
    y_train: np.ndarray,
    test: pd.DataFrame,
    y_test: np.ndarray,
    schema: InputSchema,
    metric: str,
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    """The imputer used and, for knn, its effect: the chosen learner with its chosen config
    refitted on median-imputed features, both scored on the same test rows."""
    report: dict[str, Any] = {
        "numeric_imputer": numeric_imputer,
        "missing_in_training": {c: float(train[c].isna().mean()) for c in schema.num if train[c].isna().any()},
    }
    if numeric_imputer != "knn" or not schema.num:
        return report
    from sklearn.base import clone

    quality = {}
    for name in ("median", "knn"):
        prep = make_preprocessor(schema, numeric_imputer=name, seed=seed).fit(train)
        fitted = clone(model).fit(prep.transform(train), y_train)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            proba = fitted.predict_proba(prep.transform(test))
        quality[name] = score(metric, y_test, proba, len(classes))[0]
    report["comparison"] = {
        "metric": metric,
        "test": quality,
        "note": "the exported learner and config refitted with each imputer on the same split",
    }
    return report


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _first_verified(
    search: SearchResult,
    preprocessor: Any,
    test: pd.DataFrame,
    schema: InputSchema,
    classes: list[str],
    budgets: Budgets,
    profile: DeviceProfile,
    latency_feeds: dict[str, np.ndarray],
    seed: int,
) -> tuple[Candidate, Any, Any, bytes, list[dict[str, Any]]]:
    """The best feasible candidate whose artifact passes parity and re-measures within budget.

    Also returns the better candidates it passed over and why, for the manifest: a user who
    reads the search log should see why the top trial is not the exported one.
    """
    if not search.candidates:
        closest = "; ".join(
            f"{t.learner} p99 {t.latency_p99_us:.1f} µs, {t.size_bytes / 1024:.1f} KB, quality {t.quality:.4f}"
            for t in search.closest()
        )
        raise BudgetError(
            f"no candidate met the budgets (p99 <= {budgets.latency_p99_us:g} µs, size <= "
            f"{budgets.size_bytes / 1024:g} KB) in {len(search.trials)} trials; closest: {closest or 'none'}"
        )
    failures: list[str] = []
    rejected: list[dict[str, Any]] = []
    parity_failed = False
    for candidate in search.candidates:
        model_bytes = candidate.graph.SerializeToString()
        model = candidate.model

        def native_proba(frame: pd.DataFrame, model: Any = model) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                return model.predict_proba(preprocessor.transform(frame))

        try:
            parity = check_parity(model_bytes, native_proba, test, schema, classes, seed=seed)
        except ParityError as exc:
            failures.append(f"trial {candidate.trial.index} ({candidate.trial.learner}): {exc}")
            rejected.append({"trial_index": candidate.trial.index, "reason": str(exc)})
            parity_failed = True
            continue
        latency = measure_latency_rounds(
            model_bytes,
            latency_feeds,
            rounds=ARTIFACT_LATENCY_ROUNDS,
            runs=ARTIFACT_LATENCY_RUNS,
            warmup=LATENCY_WARMUP_RUNS,
            profile=profile,
        )
        if latency.p99_us > budgets.latency_p99_us or len(model_bytes) > budgets.size_bytes:
            reason = f"re-measured p99 {latency.p99_us:.1f} µs, {len(model_bytes)} bytes"
            failures.append(f"trial {candidate.trial.index} ({candidate.trial.learner}): {reason}")
            rejected.append({"trial_index": candidate.trial.index, "reason": reason})
            continue
        return candidate, parity, latency, model_bytes, rejected
    if parity_failed:
        raise ParityError("no feasible candidate passed the parity gate: " + " | ".join(failures))
    raise BudgetError(
        "no feasible candidate stayed within budget when its artifact was re-measured: " + " | ".join(failures)
    )
