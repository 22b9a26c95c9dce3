"""edge_runtime.explain on a real artifact built by factory.build: the contributions are the
exported graph's own probabilities under occlusion, computed in one batched run, and cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.artifact import Manifest
from edge_runtime.encoding import InputLayout, encode_records
from edge_runtime.explain import Explainer, explain_record
from edge_runtime.session import make_session


@pytest.fixture(scope="module")
def loaded(small_artifact: Path) -> tuple[Any, dict[str, Any]]:
    manifest = json.loads((small_artifact / "manifest.json").read_text())
    return make_session(small_artifact / "model.onnx"), manifest


def _probability(session: Any, manifest: dict[str, Any], record: dict[str, Any], segment: str) -> float:
    feeds = encode_records(InputLayout.from_manifest(manifest), [record])
    _, proba = session.run(["label", "probabilities"], feeds)
    return float(proba[0][manifest["target"]["classes"].index(segment)])


def test_reference_record_is_training_median_or_missing(loaded: tuple[Any, dict[str, Any]]) -> None:
    _, manifest = loaded
    reference = manifest["explain"]["reference_record"]
    assert set(reference) == {spec["name"] for spec in manifest["inputs"]}
    for name in manifest["input_layout"]["cat"]:
        assert reference[name] is None
    for spec in manifest["inputs"]:
        if spec["type"] == "number":
            assert spec["min"] <= reference[spec["name"]] <= spec["max"]


def test_contributions_are_the_graphs_own_probability_drops(loaded: tuple[Any, dict[str, Any]]) -> None:
    session, manifest = loaded
    reference = manifest["explain"]["reference_record"]
    for golden in manifest["golden_samples"]:
        record = golden["record"]
        result = explain_record(session, manifest, record)
        assert [r["contribution"] for r in result] == sorted((r["contribution"] for r in result), reverse=True)
        assert {r["field"] for r in result} == set(reference)
        segment = result[0]["segment"]
        assert segment == golden["label"]
        p_record = _probability(session, manifest, record, segment)
        assert result[0]["probability"] == pytest.approx(p_record, abs=1e-6)
        for entry in result:
            occluded = dict(record, **{entry["field"]: reference[entry["field"]]})
            expected = p_record - _probability(session, manifest, occluded, segment)
            assert entry["contribution"] == pytest.approx(expected, abs=1e-5)
            if record.get(entry["field"]) == reference[entry["field"]]:
                assert entry["contribution"] == pytest.approx(0.0, abs=1e-6)
            assert entry["value"] == record.get(entry["field"])


def test_some_input_explains_a_confident_record(loaded: tuple[Any, dict[str, Any]]) -> None:
    """A record the model is sure about has at least one input whose occlusion lowers that certainty."""
    session, manifest = loaded
    goldens = sorted(manifest["golden_samples"], key=lambda g: -max(g["probabilities"]))
    result = explain_record(session, manifest, goldens[0]["record"])
    assert result[0]["contribution"] > 0.01


class _CountingSession:
    """Wraps a session and records the batch size of every ``run`` (the cost that matters)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batches: list[int] = []

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(outputs, feeds)


def test_explain_cost_is_one_batched_run(loaded: tuple[Any, dict[str, Any]]) -> None:
    """One ``session.run`` on n_inputs + 1 rows per explanation, not n_inputs + 1 runs: counted,
    not timed (a timing depends on the machine's load; benchmarks/ measure the speed)."""
    session, manifest = loaded
    counting = _CountingSession(session)
    explainer = Explainer(Manifest.from_json(manifest))  # prepared once, as Classifier.explain does
    for golden in manifest["golden_samples"]:
        explainer.explain(counting, golden["record"])
    assert counting.batches == [len(manifest["inputs"]) + 1] * len(manifest["golden_samples"])


def test_explain_module_imports_only_numpy_and_onnxruntime() -> None:
    code = (
        "import sys, edge_runtime.explain\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'shap', 'factory', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_manifest_without_reference_is_refused_with_a_clear_error(loaded: tuple[Any, dict[str, Any]]) -> None:
    session, manifest = loaded
    stripped = {k: v for k, v in manifest.items() if k != "explain"}
    with pytest.raises(KeyError, match="explain.reference_record"):
        explain_record(session, stripped, manifest["golden_samples"][0]["record"])
