"""The manifest stage: everything docs/DESIGN.md §3 lists, assembled from the earlier stages' records.

Nothing here searches or measures; it reads the stages' results, adds the held-out evaluation
(``factory._evaluate``) and returns the JSON-safe manifest the write stage signs. The ONNX hash,
its size and the key id are filled in by the write stage, which sees the bytes it writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from factory._config import BuildConfig
from factory._evaluate import explanations, held_out_metrics, json_safe, preprocessing_report, segment_profiles
from factory._manifest import (
    FORMAT_VERSION,
    golden_records,
    input_specs,
    library_versions,
    reference_statistics,
    to_record,
)
from factory._parity import onnx_predict
from factory._settings import MISSING_TOKEN
from factory._stages import Dataset, Labelled, Searched, TableData
from factory._verify import Verified
from factory.explain import reference_record
from factory.explain._baseline import refit_baselines

__all__ = ["DEVICE_EXPLAIN_METHOD", "assemble_manifest"]

DEVICE_EXPLAIN_METHOD = (
    "occlusion on the exported graph: P(chosen segment | record) minus P(chosen segment | record "
    "with one input set to reference_record), one batched run of n_inputs + 1 rows "
    "(edge_runtime.explain.explain_record)"
)


def _categories(searched: Searched, dataset: Dataset) -> list[list[str]]:
    """The categories the fitted encoder saw, per string input (the manifest's allowed values)."""
    if not dataset.schema.cat:
        return []
    columns = searched.preprocessor.named_steps["columns"]
    encoder = columns.named_transformers_["cat"].named_steps["encode"]
    return [list(map(str, c)) for c in encoder.categories_]


def _golden_samples(verified: Verified, dataset: Dataset, seed: int) -> list[dict[str, Any]]:
    frame = golden_records(dataset.test, verified.stressed.frame, dataset.schema, seed)
    labels, proba = onnx_predict(verified.session, frame, dataset.schema)
    return [
        {
            "record": to_record(row, dataset.schema),
            "label": str(labels[i]),
            "probabilities": [float(p) for p in proba[i]],
        }
        for i, (_, row) in enumerate(frame.iterrows())
    ]


def _budgets(config: BuildConfig, verified: Verified, searched: Searched) -> dict[str, Any]:
    profile = searched.context.profile
    return {
        "latency_p99_us": config.latency_budget_us,
        "size_bytes": config.budgets.size_bytes,
        "measured": {
            "latency_p50_us": verified.latency.p50_us,
            "latency_p99_us": verified.latency.p99_us,
            "runs": verified.latency.runs,
            "size_bytes": len(verified.model_bytes),
            "device_profile": profile.to_dict(),
            "scale": profile.scale,
        },
        "met": True,
    }


def _search(config: BuildConfig, verified: Verified, searched: Searched) -> dict[str, Any]:
    trial, trials = verified.candidate.trial, searched.search.trials
    return {
        "learner": trial.learner,
        "config": trial.config,
        "trial_index": trial.index,
        "rejected_at_export": verified.rejected,
        "trials": len(trials),
        "feasible_trials": sum(t.feasible for t in trials),
        "time_budget_s": config.time_budget_s,
        "wall_time_s": searched.search.wall_time_s,
        "seed": config.seed,
        "estimator_list": list(config.learners),
        **({"selection": searched.search.selection} if searched.search.selection is not None else {}),
    }


def assemble_manifest(
    config: BuildConfig,
    data: TableData,
    labelled: Labelled,
    dataset: Dataset,
    searched: Searched,
    verified: Verified,
    *,
    name: str,
    version: str,
) -> dict[str, Any]:
    """manifest.json's content (JSON-safe), before the write stage adds hash, size and key id."""
    schema, split, y, seed = dataset.schema, dataset.split, dataset.y, config.seed
    id_field = config.id_column or "customer_id"
    train, test = dataset.train, dataset.test
    model = verified.native_model
    train_matrix = searched.preprocessor.transform(train)
    explained = explanations(
        model, searched.preprocessor, train_matrix, y[split.train], test, y[split.test], schema, dataset.classes, seed,
        metric=config.metric, searched=searched.search.baselines, refit_rows=verified.refit_rows,
        fitted=refit_baselines(searched, dataset) if verified.refit_rows else searched.search.baseline_models,
    )  # fmt: skip
    # The default job's feature program and skew gate are manifest sections, not data report lines.
    data_report = dict(config.data_report) if config.data_report is not None else None
    till = {}
    if data_report is not None and "feature_program" in data_report:
        till = {key: data_report.pop(key) for key in ("feature_program", "skew_gate")}
    dictionary = data_report.pop("feature_dictionary", None) if data_report is not None else None
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "model_version": f"{name}/{version}",
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": "classification",
        "id_field": id_field,
        "input_layout": {"num": schema.num, "cat": schema.cat, "missing_token": MISSING_TOKEN},
        "inputs": input_specs(train, schema, _categories(searched, dataset)),
        "target": {
            "name": config.target,
            "classes": dataset.classes,
            "profiles": labelled.segment_profiles or segment_profiles(train, y[split.train], schema, dataset.classes),
            "label_rule": labelled.label_rule,
        },
        "metrics": {
            "metric": config.metric,
            "validation_quality": verified.candidate.trial.quality,  # as searched, before any refit
            "test": held_out_metrics(y[split.test], verified.test_proba, dataset.classes),
            "n_train": len(split.train),
            "n_val": len(split.validation),
            "n_test": len(split.test),
            "baseline": explained["baseline"],
        },
        "budgets": _budgets(config, verified, searched),
        "search": _search(config, verified, searched),
        "parity": verified.parity.to_json(),
        "preprocessing": preprocessing_report(
            config.numeric_imputer,
            model,
            train,
            y[split.train],
            test,
            y[split.test],
            schema,
            config.metric,
            dataset.classes,
            seed,
        ),  # fmt: skip
        "explain": {
            "global_importance": explained["global_importance"],
            "reference_record": reference_record(train, schema),
            "device_method": DEVICE_EXPLAIN_METHOD,
        },
        "reference": reference_statistics(train, schema),
        "golden_samples": _golden_samples(verified, dataset, seed),
        "libraries": library_versions(),
        "data": {
            "source": data.source,
            "rows": len(data.raw),
            "fingerprint": data.fingerprint,
            "report": data_report,
            "schema": schema.report(),  # each column: the type chosen and why (factory._schema)
        },  # fmt: skip
    }
    fields = {*schema.columns, *(spec.column for spec in schema.dates), id_field}
    ignored = [str(c) for c in data.raw.columns if str(c) not in fields]
    if ignored:  # a row of the training table is not refused at the till for these (edge_runtime._schema)
        manifest["ignored_fields"] = ignored
    notes = [*data.notes, *labelled.notes]
    if notes:  # how the file was read and which rows were left out (factory._data, factory._stages)
        manifest["data"]["notes"] = notes
    leaks = dataset.suspected_leaks
    if leaks:  # an input that alone gives the answer away (factory._leaks): named, not refused
        manifest["data"]["suspected_leaks"] = leaks
    if dictionary is not None:  # what each input means and its unit (report-only)
        manifest["feature_dictionary"] = dictionary
    if till:  # a transaction-log job: how the till makes these inputs, and the gate that proved it
        manifest["feature_program"] = till["feature_program"]
        manifest["skew_gate"] = till["skew_gate"]
    if schema.dates:  # the device derives these number inputs from the date strings (edge_runtime.dates)
        manifest["dates"] = [spec.to_manifest() for spec in schema.dates]
    if labelled.segments_report is not None:
        manifest["segments"] = labelled.segments_report
    if verified.float_graph is not None:  # gated like model.onnx: the device runs it (docs/ARTIFACT.md)
        manifest["device_graph"] = "float"
        manifest["float_graph"] = verified.float_graph.manifest_section()
    if labelled.few_report is not None:
        manifest["few_labels"] = labelled.few_report
    return dict(json_safe(manifest))
