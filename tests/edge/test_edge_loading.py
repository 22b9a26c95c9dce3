"""Loading refuses tampered or broken artifacts with the right error; a Runtime keeps its model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from edge_toy_artifact import GOLDEN_RECORDS, generate_key, write_manifest

from edge_runtime import (
    Classifier,
    ModelIntegrityError,
    ModelLoadError,
    Runtime,
    SelfTestError,
    SignatureError,
)

SECRET = "s3cret-deployment-key-0123456789"


def copy(artifact: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(artifact, target)
    return target


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def resign(folder: Path, key, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    write_manifest(folder, manifest, key)


def test_good_artifact_loads_and_reproduces_goldens(toy_artifact, toy_public_key):
    clf = Classifier.load(toy_artifact, toy_public_key)
    assert clf.model_version == "toy-seg/20261127T000000Z"
    assert clf.classes == ("A", "B", "C", "D")
    for golden in clf.manifest.golden_samples:
        result = clf.classify(golden.record)
        assert result.segment == golden.label
        assert list(result.probabilities.values()) == pytest.approx(golden.probabilities, abs=1e-6)
    assert clf.input_stats["records"] == len(GOLDEN_RECORDS)  # self-test rows not counted


def test_public_key_as_bytes_and_default_location(toy_artifact, toy_public_key, monkeypatch):
    Classifier.load(toy_artifact, toy_public_key.read_bytes())
    monkeypatch.setenv("EDGESEG_KEY_DIR", str(toy_public_key.parent))
    assert Classifier.load(toy_artifact).model_version == "toy-seg/20261127T000000Z"
    empty = toy_public_key.parent.parent / "no-keys-here"
    monkeypatch.setenv("EDGESEG_KEY_DIR", str(empty))
    with pytest.raises(SignatureError) as caught:
        Classifier.load(toy_artifact)
    assert str(caught.value) == (
        f"no public key given and none at the default location "
        f"{str(empty / 'signing_key.pub.pem')!r}; pass public_key= or set EDGESEG_KEY_DIR"
    )


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("model.onnx", ModelIntegrityError, r"^model\.onnx sha256 [0-9a-f]{16}… does not match"),
        ("manifest.json", SignatureError, r"^manifest\.json signature does not verify with the "
                                          r"trusted key [0-9a-f]{16}$"),
        ("manifest.sig", SignatureError, r"^manifest\.(sig is malformed|json signature does not)"),
    ],
)  # fmt: skip
def test_flipped_byte_is_refused(toy_artifact, toy_public_key, tmp_path, target, error, message):
    folder = copy(toy_artifact, tmp_path)
    if target == "manifest.sig":  # flip inside the base64 signature itself
        envelope = json.loads((folder / target).read_text())
        sig = envelope["signature"]
        envelope["signature"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        (folder / target).write_text(json.dumps(envelope))
    else:
        flip_byte(folder / target)
    with pytest.raises(error, match=message):
        Classifier.load(folder, toy_public_key)


def test_other_models_files_swapped_in_are_refused(toy_artifact, toy_artifact_b, toy_public_key, tmp_path):
    folder = copy(toy_artifact, tmp_path, "onnx_swapped")
    shutil.copy(toy_artifact_b / "model.onnx", folder / "model.onnx")
    with pytest.raises(ModelIntegrityError):
        Classifier.load(folder, toy_public_key)
    folder = copy(toy_artifact, tmp_path, "manifest_swapped")
    shutil.copy(toy_artifact_b / "manifest.json", folder / "manifest.json")
    with pytest.raises(SignatureError):
        Classifier.load(folder, toy_public_key)
    shutil.copy(toy_artifact_b / "manifest.sig", folder / "manifest.sig")
    with pytest.raises(ModelIntegrityError):  # a valid manifest of another model.onnx
        Classifier.load(folder, toy_public_key)


def test_wrong_key_missing_file_and_format_version(toy_artifact, toy_key, tmp_path):
    _, other_pem = generate_key()
    with pytest.raises(SignatureError, match="does not verify with the trusted key"):
        Classifier.load(toy_artifact, other_pem)
    folder = copy(toy_artifact, tmp_path, "no_sig")
    (folder / "manifest.sig").unlink()
    with pytest.raises(ModelLoadError) as caught:
        Classifier.load(folder, toy_key[1])
    assert str(caught.value) == f"artifact {str(folder)!r} has no manifest.sig"
    folder = copy(toy_artifact, tmp_path, "v2")
    resign(folder, toy_key[0], format_version=2)
    with pytest.raises(ModelLoadError) as caught:
        Classifier.load(folder, toy_key[1])
    assert str(caught.value).startswith("manifest.json format_version: 2 is not supported (this runtime reads [1])")


def test_golden_mismatch_is_a_self_test_error(toy_artifact, toy_key, tmp_path):
    folder = copy(toy_artifact, tmp_path, "bad_golden")
    manifest = json.loads((folder / "manifest.json").read_text())
    goldens = manifest["golden_samples"]
    goldens[1]["probabilities"][0] += 0.01
    resign(folder, toy_key[0], golden_samples=goldens)
    with pytest.raises(SelfTestError) as caught:
        Classifier.load(folder, toy_key[1])
    got = goldens[1]["probabilities"][0] - 0.01
    assert str(caught.value) == (
        f"golden sample 1: probability of 'A' is {got:.6f}, expected {got + 0.01:.6f} (tolerance 0.0001)"
    )
    wrong_label = [dict(g) for g in json.loads((toy_artifact / "manifest.json").read_text())[
        "golden_samples"]]  # fmt: skip
    expected_label = wrong_label[0]["label"]
    wrong_label[0]["label"] = "Z"
    resign(folder, toy_key[0], golden_samples=wrong_label)
    with pytest.raises(SelfTestError) as caught:
        Classifier.load(folder, toy_key[1])
    assert str(caught.value) == f"golden sample 0: expected label 'Z', got {expected_label!r}"
    resign(folder, toy_key[0], golden_samples=[])
    with pytest.raises(SelfTestError) as caught:
        Classifier.load(folder, toy_key[1])
    assert str(caught.value) == "manifest has no golden samples: the model cannot be self-tested"


def test_running_runtime_keeps_its_model_when_handed_a_bad_one(toy_artifact, toy_artifact_b, toy_public_key, tmp_path):
    bad = copy(toy_artifact_b, tmp_path, "bad")
    flip_byte(bad / "model.onnx")
    with Runtime(
        toy_artifact,
        outbox_path=tmp_path / "outbox.db",
        device_id="till-1",
        secret=SECRET,
        public_key=toy_public_key,
    ) as rt:
        before = rt.classify(GOLDEN_RECORDS[0])
        with pytest.raises(ModelIntegrityError):
            rt.swap_model(bad)
        assert rt.model_version == "toy-seg/20261127T000000Z"
        assert rt.previous_artifact_dir is None
        after = rt.classify(GOLDEN_RECORDS[0])
        assert (after.segment, after.probabilities) == (before.segment, before.probabilities)
        assert after.seq == before.seq + 1

        rt.swap_model(toy_artifact_b)
        assert rt.model_version == "toy-seg/20261127T010000Z"
        assert rt.previous_artifact_dir == toy_artifact
        swapped = rt.classify(GOLDEN_RECORDS[0])
        assert swapped.model_version == "toy-seg/20261127T010000Z"
        assert swapped.probabilities != before.probabilities

        rt.rollback()
        assert rt.model_version == "toy-seg/20261127T000000Z"
        assert rt.classify(GOLDEN_RECORDS[0]).probabilities == before.probabilities
        versions = [r["model_version"] for r in rt.outbox.pending(10)]
        assert versions == [
            "toy-seg/20261127T000000Z",
            "toy-seg/20261127T000000Z",
            "toy-seg/20261127T010000Z",
            "toy-seg/20261127T000000Z",
        ]


def test_rollback_without_previous_model(toy_artifact, toy_public_key, tmp_path):
    with Runtime(
        toy_artifact, outbox_path=tmp_path / "o.db", device_id="d", secret=SECRET,
        public_key=toy_public_key,
    ) as rt:  # fmt: skip
        with pytest.raises(ModelLoadError) as caught:
            rt.rollback()
        assert str(caught.value) == "no previous model to roll back to"
