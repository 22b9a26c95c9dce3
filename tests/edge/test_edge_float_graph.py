"""The device side of the float-only graph: which graph runs, the hash, and equal answers.

A factory artifact carries ``model_float.onnx`` (``device_graph: "float"``); the device must
run it with the same answers as ``model.onnx``, refuse a float file that is not the signed one,
and keep running the raw graph for artifacts without it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import Classifier
from edge_runtime.artifact import FLOAT_MODEL_FILE, MODEL_FILE, Manifest
from edge_runtime.encoding import encode_records
from edge_runtime.exceptions import ManifestError, ModelIntegrityError
from edge_runtime.session import make_session


@pytest.fixture(scope="module")
def float_clf(small_artifact: Path, signing_public_key: Path) -> Classifier:
    # lenient: the hard records leave gaps in inputs training never had missing, on purpose
    return Classifier.load(small_artifact, signing_public_key, contract="lenient")


@pytest.fixture(scope="module")
def raw_clf(small_artifact: Path, signing_public_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """The same artifact with the float file removed: the raw graph serves."""
    copy = tmp_path_factory.mktemp("no_float") / "artifact"
    shutil.copytree(small_artifact, copy)
    (copy / FLOAT_MODEL_FILE).unlink()
    return Classifier.load(copy, signing_public_key, contract="lenient")


def _hard_records(clf: Classifier) -> list[dict[str, object]]:
    """Golden records, every field missing in turn, all missing, and unseen categories."""
    base = [dict(g.record) for g in clf.manifest.golden_samples]
    names = [spec.name for spec in clf.manifest.inputs if not spec.required]
    records = list(base)
    for i, name in enumerate(names):
        records.append({k: v for k, v in base[i % len(base)].items() if k != name})
    records.append({})
    for name in clf.manifest.input_layout.cat:
        records.append(dict(base[0], **{name: "never seen in training"}))
        records.append(dict(base[1 % len(base)], **{name: ""}))
    return records


def test_factory_artifact_runs_the_float_graph(float_clf: Classifier, raw_clf: Classifier) -> None:
    manifest = float_clf.manifest
    assert manifest.device_graph == "float" and manifest.float_graph is not None
    assert manifest.float_graph.parity.passed
    assert manifest.float_graph.parity.rows_with_unseen_category > 0
    assert float_clf.graph == "float"
    assert raw_clf.graph == "raw"


def test_float_graph_answers_like_the_raw_graph(
    float_clf: Classifier, raw_clf: Classifier, small_artifact: Path
) -> None:
    records = _hard_records(float_clf)
    session = make_session(small_artifact / MODEL_FILE)
    labels, proba = session.run(["label", "probabilities"], encode_records(float_clf.manifest.input_layout, records))
    for i, record in enumerate(records):
        fast, slow = float_clf.classify(record), raw_clf.classify(record)
        assert fast.segment == slow.segment == labels[i]
        for got, want in zip(fast.probabilities.values(), proba[i], strict=True):
            assert math.isclose(got, float(want), abs_tol=1e-6)
    fast_batch, slow_batch = float_clf.classify_many(records), raw_clf.classify_many(records)
    assert list(fast_batch.segments) == list(slow_batch.segments) == list(labels)
    np.testing.assert_allclose(fast_batch.probabilities, proba, atol=1e-6)


def test_drift_sees_the_same_encoded_rows(float_clf: Classifier, raw_clf: Classifier) -> None:
    """Runtime counts strings: the float path decodes its codes back, unseen values included."""
    for record in _hard_records(float_clf):
        (_, fast), (_, slow) = float_clf.classify_encoded(record), raw_clf.classify_encoded(record)
        assert fast.cat == slow.cat
        assert np.array_equal(np.array(fast.num), np.array(slow.num), equal_nan=True)


def test_explain_runs_on_the_raw_graph(float_clf: Classifier, raw_clf: Classifier) -> None:
    record = dict(float_clf.manifest.golden_samples[0].record)
    assert float_clf.explain(record) == raw_clf.explain(record)


def test_a_tampered_float_graph_is_refused(small_artifact: Path, signing_public_key: Path, tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(small_artifact, copy)
    body = bytearray((copy / FLOAT_MODEL_FILE).read_bytes())
    body[len(body) // 2] ^= 0x01
    (copy / FLOAT_MODEL_FILE).write_bytes(bytes(body))
    with pytest.raises(ModelIntegrityError, match=r"^model_float\.onnx sha256 [0-9a-f]{16}… does not match the signed"):
        Classifier.load(copy, signing_public_key)


def test_an_artifact_without_the_new_fields_runs_the_raw_graph(toy_artifact: Path, toy_public_key: Path) -> None:
    """Artifacts written before the float graph (the toy writer knows nothing of it) still load."""
    manifest = json.loads((toy_artifact / "manifest.json").read_text())
    assert "device_graph" not in manifest and "float_graph" not in manifest
    clf = Classifier.load(toy_artifact, toy_public_key)
    assert clf.graph == "raw"
    golden = clf.manifest.golden_samples[0]
    assert clf.classify(golden.record).segment == golden.label


def test_device_graph_float_needs_its_section(small_artifact: Path) -> None:
    data = json.loads((small_artifact / "manifest.json").read_text())
    del data["float_graph"]
    with pytest.raises(ManifestError, match="device_graph: is 'float' but the manifest has no float_graph"):
        Manifest.from_json(data)
    data["device_graph"] = "turbo"
    with pytest.raises(ManifestError, match=r"device_graph: must be 'raw' or 'float', got 'turbo'"):
        Manifest.from_json(data)


@pytest.mark.parametrize("which", ["float", "raw"])
def test_nan_in_numpy_columns_is_missing(float_clf: Classifier, raw_clf: Classifier, which: str) -> None:
    """classify_many on NaN float columns equals classify on records with None in those fields."""
    clf = float_clf if which == "float" else raw_clf
    records = _hard_records(clf)
    layout = clf.manifest.input_layout
    columns: dict[str, np.ndarray] = {}
    for name in layout.num:
        values = [r.get(name) for r in records]
        columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    for name in layout.cat:
        columns[name] = np.array([r.get(name) or "" for r in records], dtype=str)
    assert np.isnan(columns[layout.num[0]]).any()
    batch = clf.classify_many(columns)
    for i, record in enumerate(records):
        with_none = {name: record.get(name) for name in (*layout.num, *layout.cat)}
        single = clf.classify(with_none)
        assert batch.segments[i] == single.segment
        np.testing.assert_allclose(batch.probabilities[i], list(single.probabilities.values()), atol=1e-6)


def test_runtime_batches_on_the_float_graph_count_drift_like_single_records(
    small_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    """Runtime.classify_many encodes strings for drift and codes them for the float graph."""
    from edge_runtime import Runtime

    clf = Classifier.load(small_artifact, signing_public_key, contract="lenient")
    records = _hard_records(clf)
    with Runtime(clf, outbox_path=tmp_path / "a.db", device_id="d", secret="s" * 32) as batch_rt:
        batch = batch_rt.classify_many(records)
        batch_counts = batch_rt.drift_snapshot()["inputs"]
    with Runtime(clf, outbox_path=tmp_path / "b.db", device_id="d", secret="s" * 32) as single_rt:
        singles = [single_rt.classify(r).segment for r in records]
        single_counts = single_rt.drift_snapshot()["inputs"]
    assert list(batch.segments) == singles
    assert batch_counts == single_counts
