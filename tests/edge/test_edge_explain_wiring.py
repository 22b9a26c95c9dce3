"""classify(record, explain=True) returns the graph's own occlusion contributions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime import Classifier, Runtime
from edge_runtime.explain import explain_record
from edge_runtime.session import make_session

RECORD = {"ID": "462809", "Gender": "Male", "Ever_Married": "No", "Age": 22.0, "Graduated": "No",
          "Profession": "Healthcare", "Work_Experience": 1.0, "Spending_Score": "Low",
          "Family_Size": 4.0, "Var_1": "Cat_4"}  # fmt: skip


def test_classifier_explain_matches_the_function_on_the_artifact(
    small_artifact: Path, signing_public_key: Path
) -> None:
    classifier = Classifier.load(small_artifact, public_key=signing_public_key)
    result = classifier.classify(RECORD, explain=True)
    assert result.explanation is not None
    session = make_session(small_artifact / "model.onnx")
    expected = explain_record(session, classifier.manifest, RECORD)
    assert [e["field"] for e in result.explanation] == [e["field"] for e in expected]
    assert [e["contribution"] for e in result.explanation] == pytest.approx(
        [e["contribution"] for e in expected], abs=1e-6
    )
    assert {e["segment"] for e in result.explanation} == {result.segment}
    assert "explanation" in result.to_dict()
    plain = classifier.classify(RECORD)
    assert plain.explanation is None and "explanation" not in plain.to_dict()
    assert plain.segment == result.segment


def test_runtime_explains_but_stores_only_the_result(
    small_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    runtime = Runtime(small_artifact, outbox_path=tmp_path / "outbox.db", device_id="d-1", secret=b"s" * 32,
                      public_key=signing_public_key)  # fmt: skip
    result = runtime.classify(RECORD, explain=True)
    assert result.seq == 1 and result.explanation
    (row,) = runtime.outbox.pending(10)
    assert set(row) == {"seq", "customer_ref", "segment", "probabilities", "model_version", "classified_at"}
    assert row["segment"] == result.segment
    runtime.outbox.close()
