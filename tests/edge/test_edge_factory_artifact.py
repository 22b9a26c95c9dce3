"""The edge runtime on real artifacts built by the real factory (tests/conftest.py fixtures)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import (
    Classifier,
    ModelIntegrityError,
    Runtime,
    SchemaError,
    SignatureError,
)
from edge_runtime.artifact import NumberReference
from edge_runtime.encoding import InputLayout, encode_records
from edge_runtime.session import make_session

SECRET = "factory-artifact-secret-0123456789"


@pytest.fixture(scope="module")
def clf(small_artifact, signing_public_key) -> Classifier:
    # lenient: golden and hand-made records leave gaps on purpose (graph parity, not the contract)
    return Classifier.load(small_artifact, signing_public_key, contract="lenient")


def test_loads_and_reproduces_every_golden_sample(clf):
    manifest = clf.manifest
    assert clf.classes == ("A", "B", "C", "D")
    assert clf.model_version == f"{manifest.name}/{manifest.version}"
    for golden in manifest.golden_samples:
        result = clf.classify(golden.record)
        assert result.segment == golden.label
        np.testing.assert_allclose(list(result.probabilities.values()), golden.probabilities, atol=1e-4)


def test_fast_path_matches_the_shared_encoder(clf, small_artifact):
    """The per-field fast path must encode exactly like edge_runtime.encoding (the parity gate's encoder)."""
    layout = InputLayout.from_manifest(clf.manifest)
    records = [dict(g.record) for g in clf.manifest.golden_samples]
    records += [
        {},  # everything missing
        {"Age": 30, "Profession": "Astronaut", "Gender": ""},
        {"Age": 120.5, "Work_Experience": None, "Var_1": "Cat_99", "ID": "1"},
    ]
    session = make_session(small_artifact / "model.onnx")
    for record in records:
        labels, probabilities = session.run(None, encode_records(layout, [record]))
        result = clf.classify(record)
        assert result.segment == labels[0]
        assert list(result.probabilities.values()) == probabilities[0].tolist()


def test_csv_rows_classify_like_batch(clf, segmentation_csv):
    import csv

    with open(segmentation_csv, newline="") as handle:
        rows = [row for _, row in zip(range(300), csv.DictReader(handle), strict=False)]
    numbers = set(clf.validator.num_names)
    records = [
        {k: (None if v == "" else float(v) if k in numbers else v) for k, v in row.items()
         if k != "Segmentation"}
        for row in rows
    ]  # fmt: skip
    singles = [clf.classify(r) for r in records]
    batch = clf.classify_many(records)
    assert [r.segment for r in batch] == [r.segment for r in singles]
    np.testing.assert_allclose(batch.probabilities, [list(r.probabilities.values()) for r in singles], atol=1e-6)
    stats = clf.input_stats
    assert stats["extra_fields"] == {}  # ID is the id field, not an extra


def test_schema_errors_on_the_real_schema(clf):
    record = dict(clf.manifest.golden_samples[0].record)
    with pytest.raises(SchemaError) as caught:
        clf.classify(dict(record, Age=True))
    assert str(caught.value) == "field 'Age': must be a number, not a boolean (got True)"
    with pytest.raises(SchemaError) as caught:
        clf.classify(dict(record, Gender="x" * 257))
    assert caught.value.rule == "must be at most 256 characters"


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "error"),
    [("model.onnx", ModelIntegrityError), ("manifest.json", SignatureError),
     ("manifest.sig", SignatureError)],
)  # fmt: skip
def test_tampered_factory_artifact_is_refused_and_runtime_keeps_model(
    small_artifact, other_artifact, signing_public_key, tmp_path, name, error
):
    bad = tmp_path / "bad"
    shutil.copytree(other_artifact, bad)
    if name == "manifest.sig":
        envelope = json.loads((bad / name).read_text())
        raw = bytearray(base64.b64decode(envelope["signature"]))
        raw[5] ^= 0x01
        envelope["signature"] = base64.b64encode(bytes(raw)).decode()
        (bad / name).write_text(json.dumps(envelope))
    else:
        flip(bad / name)
    with Runtime(small_artifact, outbox_path=tmp_path / "o.db", device_id="d", secret=SECRET,
                 public_key=signing_public_key, contract="lenient") as rt:  # fmt: skip
        version = rt.model_version
        with pytest.raises(error):
            rt.swap_model(bad)
        assert rt.model_version == version
        assert rt.classify({"Age": 40}).model_version == version


def test_other_models_onnx_swapped_in_is_refused(small_artifact, other_artifact, signing_public_key, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(small_artifact, mixed)
    shutil.copy(other_artifact / "model.onnx", mixed / "model.onnx")
    with pytest.raises(ModelIntegrityError):
        Classifier.load(mixed, signing_public_key)


def test_swap_to_other_model_and_rollback(small_artifact, other_artifact, signing_public_key, tmp_path):
    with Runtime(small_artifact, outbox_path=tmp_path / "o.db", device_id="d", secret=SECRET,
                 public_key=signing_public_key, contract="lenient") as rt:  # fmt: skip
        first = rt.model_version
        rt.swap_model(other_artifact)
        assert rt.model_version != first
        assert rt.previous_artifact_dir == Path(small_artifact)
        second = rt.classify({"Age": 40, "ID": "9"})
        assert second.model_version == rt.model_version
        rt.rollback()
        assert rt.model_version == first
        snapshot = rt.drift_snapshot()
        assert snapshot["model_version"] == first
        reference = rt.classifier.manifest.reference
        for name, entry in snapshot["inputs"].items():
            ref = reference[name]
            if isinstance(ref, NumberReference):
                assert len(entry["counts"]) == len(ref.bin_edges)  # k bins + missing
            else:
                assert len(entry["counts"]) == len(ref.categories) + 2  # + other, missing
