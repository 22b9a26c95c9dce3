"""Build real models on the shared datasets and check what a user relies on in the artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from edge_runtime.encoding import InputLayout, encode_records
from edge_runtime.exceptions import ModelIntegrityError, SignatureError
from edge_runtime.signing import verify_artifact
from tests.conftest import shared_file

DATASETS = {
    "segmentation": dict(path="segmentation/Train.csv", target="Segmentation", drop=[], id_column="ID", sep=None),
    "bank": dict(path="bank_marketing/bank-full.csv", target="y", drop=["duration"], id_column=None, sep=None),
}
LATENCY_BUDGET_US = 50.0
SIZE_BUDGET_KB = 64.0

MANIFEST_FIELDS = {
    "format_version",
    "name",
    "version",
    "model_version",
    "created_at",
    "input_layout",
    "inputs",
    "target",
    "metrics",
    "budgets",
    "search",
    "parity",
    "reference",
    "golden_samples",
    "onnx_sha256",
    "onnx_bytes",
    "libraries",
    "data",
    "signing",
    "id_field",
}


@pytest.fixture(scope="module", params=sorted(DATASETS), ids=sorted(DATASETS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    from factory import build

    spec = DATASETS[request.param]
    path = shared_file(spec["path"])
    result = build(
        path,
        target=spec["target"],
        drop=spec["drop"],
        id_column=spec["id_column"],
        out_dir=tmp_path_factory.mktemp(request.param),
        name=request.param,
        time_budget_s=8,
        latency_budget_us=LATENCY_BUDGET_US,
        size_budget_kb=SIZE_BUDGET_KB,
        seed=0,
    )
    return request.param, result


def test_artifact_has_every_file_and_manifest_field(built: tuple[str, Any]) -> None:
    _, result = built
    names = {p.name for p in result.artifact_dir.iterdir()}
    assert {"model.onnx", "manifest.json", "manifest.sig", "card.md", "search_log.jsonl"} <= names
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text())
    assert MANIFEST_FIELDS <= set(manifest)
    assert manifest["model_version"] == f"{manifest['name']}/{manifest['version']}"
    assert result.artifact_dir.name == manifest["version"]


def test_classes_are_the_original_labels(built: tuple[str, Any]) -> None:
    name, result = built
    spec = DATASETS[name]
    raw = pd.read_csv(shared_file(spec["path"]), sep=None, engine="python")
    assert result.manifest["target"]["classes"] == sorted(raw[spec["target"]].astype(str).unique())


def test_signature_verifies_and_tampering_is_refused(
    built: tuple[str, Any], signing_public_key: Path, tmp_path: Path
) -> None:
    _, result = built
    manifest = verify_artifact(result.artifact_dir, signing_public_key)
    assert manifest == result.typed_manifest and manifest.to_json() == result.manifest
    assert manifest.onnx_sha256 == result.manifest["onnx_sha256"]
    import shutil

    for victim, error in [
        ("model.onnx", ModelIntegrityError),
        ("manifest.json", SignatureError),
        ("manifest.sig", SignatureError),
    ]:
        copy = tmp_path / victim
        shutil.copytree(result.artifact_dir, copy)
        data = bytearray((copy / victim).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / victim).write_bytes(bytes(data))
        with pytest.raises(error):
            verify_artifact(copy, signing_public_key)


def test_size_budget_met_by_the_file_itself(built: tuple[str, Any]) -> None:
    _, result = built
    size = (result.artifact_dir / "model.onnx").stat().st_size
    assert size == result.manifest["onnx_bytes"]
    assert size <= SIZE_BUDGET_KB * 1024
    # The budgets the manifest records are the ones asked for; that the re-measured latency is
    # refused over budget is proved with fixed measurements in test_stages.py (a measured time
    # here would depend on the machine's load), and the speed itself is benchmarks/' job.
    budgets = result.manifest["budgets"]
    assert budgets["latency_p99_us"] == LATENCY_BUDGET_US and budgets["met"] is True
    assert budgets["size_bytes"] == SIZE_BUDGET_KB * 1024 and budgets["measured"]["size_bytes"] == size


def test_result_carries_the_split_the_metrics_were_computed_on(built: tuple[str, Any]) -> None:
    """Benchmarks judge other stacks on the same held-out rows: the result must say which they
    were, and its held-out predictions must be the written graph's on those rows."""
    name, result = built
    split, manifest = result.split, result.manifest
    parts = [split.train, split.validation, split.test]
    assert [len(p) for p in parts] == [manifest["metrics"][k] for k in ("n_train", "n_val", "n_test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(result.frame)))  # disjoint, complete
    assert list(result.frame.columns) == result.schema.columns
    assert result.schema.num == manifest["input_layout"]["num"] and result.schema.cat == manifest["input_layout"]["cat"]
    raw = pd.read_csv(shared_file(DATASETS[name]["path"]), sep=None, engine="python")
    assert result.labels.tolist() == raw[DATASETS[name]["target"]].astype(str).tolist()
    test = result.frame.iloc[split.test]
    records = [{c: (None if pd.isna(v) else v) for c, v in row.items()} for _, row in test.iterrows()]
    layout = InputLayout.from_manifest(manifest)
    session = ort.InferenceSession(str(result.artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], encode_records(layout, records))
    assert np.array_equal(result.test_predictions, labels)
    assert np.allclose(result.test_probabilities, proba, atol=1e-6)
    accuracy = float(np.mean(result.test_predictions == result.labels[split.test]))
    assert manifest["metrics"]["test"]["accuracy"] == pytest.approx(accuracy)


def test_graph_reproduces_the_native_pipeline_on_held_out_and_stress_rows(built: tuple[str, Any]) -> None:
    """Independent parity check: the artifact on disk vs the native sklearn pipeline, including
    rows with every field missing and categories never seen in training."""
    name, result = built
    spec = DATASETS[name]
    raw = pd.read_csv(shared_file(spec["path"]), sep=None, engine="python").sample(500, random_state=3)
    manifest = result.manifest
    layout = InputLayout.from_manifest(manifest)
    columns = [*layout.num, *layout.cat]
    records: list[dict[str, Any]] = []
    for _, row in raw.iterrows():
        records.append(
            {c: (None if pd.isna(row[c]) else (float(row[c]) if c in layout.num else str(row[c]))) for c in columns}
        )
    records += [{c: None for c in columns}] + [dict(r, **{c: "never-seen" for c in layout.cat}) for r in records[:50]]
    session = ort.InferenceSession(str(result.artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], encode_records(layout, records))
    frame = pd.DataFrame({c: [np.nan if r[c] is None else r[c] for r in records] for c in columns}).astype(
        {c: object for c in layout.cat}
    )
    expected = result.native_pipeline.predict_proba(frame)
    classes = np.array(manifest["target"]["classes"])
    assert np.array_equal(labels, classes[expected.argmax(axis=1)])
    assert np.max(np.abs(proba - expected)) <= 1e-4


def test_golden_samples_reproduce_and_cover_missing_and_unseen(built: tuple[str, Any]) -> None:
    _, result = built
    manifest = result.manifest
    layout = InputLayout.from_manifest(manifest)
    golden = manifest["golden_samples"]
    assert any(all(v is None for v in g["record"].values()) for g in golden)
    if layout.cat:
        known = {s["name"]: set(s["categories"]) for s in manifest["inputs"] if s["type"] == "string"}
        assert any(
            any(g["record"][c] is not None and g["record"][c] not in known[c] for c in layout.cat) for g in golden
        )
    session = ort.InferenceSession(str(result.artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], encode_records(layout, [g["record"] for g in golden]))
    assert list(labels) == [g["label"] for g in golden]
    assert np.allclose(proba, [g["probabilities"] for g in golden], atol=1e-6)


def test_reference_statistics_are_distributions(built: tuple[str, Any]) -> None:
    _, result = built
    manifest = result.manifest
    assert set(manifest["reference"]) == {s["name"] for s in manifest["inputs"]}
    for name, ref in manifest["reference"].items():
        if ref["type"] == "number":
            assert len(ref["proportions"]) == len(ref["bin_edges"])  # k bins + missing
            assert all(a < b for a, b in zip(ref["bin_edges"], ref["bin_edges"][1:], strict=False))
            total = sum(ref["proportions"])
        else:
            total = sum(ref["proportions"]) + ref["other"] + ref["missing"]
        assert total == pytest.approx(1.0, abs=1e-9), name


def test_search_log_holds_every_trial_with_latency_and_size(built: tuple[str, Any]) -> None:
    _, result = built
    lines = (result.artifact_dir / "search_log.jsonl").read_text().splitlines()
    trials = [json.loads(line) for line in lines]
    assert len(trials) == result.manifest["search"]["trials"]
    assert {"learner", "config", "quality", "latency_p99_us", "size_bytes", "feasible"} <= set(trials[0])
    chosen = trials[result.manifest["search"]["trial_index"]]
    assert chosen["feasible"] is True
    # the best feasible trial is exported unless the manifest says why it was passed over
    # (parity or the artifact's re-measured latency); "best" by cross-validation when the rerank
    # stage ordered the candidates (each re-scored trial's cv_quality is in the log), else by loss
    # (the exported trial itself may be listed too: its refit refused, the trial as searched kept)
    passed_over = {r["trial_index"] for r in result.manifest["search"]["rejected_at_export"]} - {chosen["index"]}
    feasible = [t for t in trials if t["feasible"] and t["index"] not in passed_over]
    selection = result.manifest["search"]["selection"]
    if selection["method"] == "cv":
        first = next(r for r in selection["ranked"] if r["trial_index"] not in passed_over)
        assert first["trial_index"] == chosen["index"] and first["cv_quality"] == chosen["cv_quality"]
        sign = -1 if result.manifest["metrics"]["metric"] == "log_loss" else 1
        qualities = [sign * r["cv_quality"] for r in selection["ranked"]]
        assert qualities == sorted(qualities, reverse=True)  # ordered by the cross-validated score
    else:
        assert chosen["loss"] == min(t["loss"] for t in feasible)
    for t in trials:
        if t["feasible"]:
            assert t["latency_p99_us"] <= LATENCY_BUDGET_US and t["size_bytes"] <= SIZE_BUDGET_KB * 1024


def test_test_metrics_are_consistent(built: tuple[str, Any]) -> None:
    _, result = built
    metrics = result.manifest["metrics"]
    matrix = np.array(metrics["test"]["confusion_matrix"])
    assert matrix.sum() == metrics["n_test"]
    assert metrics["test"]["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    supports = [v["support"] for v in metrics["test"]["per_class"].values()]
    assert supports == matrix.sum(axis=1).tolist()
