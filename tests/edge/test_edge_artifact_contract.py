"""The artifact contract (edge_runtime.artifact): what every reader of manifest.json relies on.

A factory-built manifest must load and write back byte for byte (the bytes are what is signed);
every kind of bad manifest must be refused with a ManifestError naming the field to fix.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.artifact import (
    MANIFEST_FILE,
    PUBLIC_KEY_NAME,
    InputLayout,
    Manifest,
    NumberReference,
    StringReference,
    default_key_dir,
    default_public_key_path,
    manifest_bytes,
    read_manifest,
)
from edge_runtime.exceptions import ManifestError, ModelLoadError


def _minimal() -> dict[str, Any]:
    """The smallest valid manifest: required fields only, one number and one string input."""
    return {
        "format_version": 1,
        "name": "toy",
        "version": "20261130T000000Z",
        "model_version": "toy/20261130T000000Z",
        "input_layout": {"num": ["age"], "cat": ["country"], "missing_token": "__missing__"},
        "inputs": [
            {"name": "age", "type": "number", "required": False, "min": 18.0, "max": 90},
            {"name": "country", "type": "string", "required": True, "categories": ["UK"], "max_length": 64},
        ],
        "target": {"name": "tier", "classes": ["low", "high"], "label_rule": None},
        "reference": {
            "age": {"type": "number", "bin_edges": [18.0, 50.0, 90.0], "proportions": [0.5, 0.4, 0.1]},
            "country": {"type": "string", "categories": ["UK"], "proportions": [0.9], "other": 0.05, "missing": 0.05},
        },
        "golden_samples": [{"record": {"age": 30, "country": None}, "label": "low", "probabilities": [0.75, 0.25]}],
        "onnx_sha256": "0" * 64,
        "id_field": None,
    }


def test_factory_manifest_loads_and_writes_back_the_signed_bytes(small_artifact: Path) -> None:
    body = (small_artifact / MANIFEST_FILE).read_bytes()
    manifest = read_manifest(small_artifact)
    assert manifest.to_json() == json.loads(body)
    assert manifest_bytes(manifest) == body
    # typed access readers use instead of dict lookups
    assert manifest.model_version == f"{manifest.name}/{manifest.version}"
    assert manifest.classes == manifest.target.classes
    assert [s.name for s in manifest.inputs] == [*manifest.input_layout.num, *manifest.input_layout.cat]
    assert manifest.budgets is not None and manifest.budgets.met
    assert manifest.parity is not None and manifest.parity.passed
    assert manifest.explain is not None and set(manifest.explain.reference_record) == {s.name for s in manifest.inputs}
    for name in manifest.input_layout.num:
        assert isinstance(manifest.reference[name], NumberReference)
    for name in manifest.input_layout.cat:
        assert isinstance(manifest.reference[name], StringReference)


def test_round_trip_keeps_absent_and_null_apart() -> None:
    data = _minimal()
    assert Manifest.from_json(data).to_json() == data
    del data["id_field"]
    del data["target"]["label_rule"]
    assert Manifest.from_json(data).to_json() == data


def test_manifest_is_frozen_and_does_not_share_state_with_its_json() -> None:
    data = _minimal()
    manifest = Manifest.from_json(data)
    data["golden_samples"][0]["record"]["age"] = 99
    assert manifest.golden_samples[0].record["age"] == 30
    with pytest.raises(AttributeError):
        manifest.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (lambda d: d.pop("model_version"), "model_version", "is missing"),
        (lambda d: d["inputs"][1].pop("type"), "inputs[1].type", "is missing"),
        (lambda d: d["inputs"][1].update(type="text"), "inputs[1].type", "'number' or 'string'"),
        (lambda d: d["inputs"][0].update(required="no"), "inputs[0].required", "true or false"),
        (lambda d: d["inputs"][0].update(min=True), "inputs[0].min", "must be a number"),
        (lambda d: d["target"].update(classes="low"), "target.classes", "must be a list"),
        (lambda d: d["golden_samples"][0].update(label=1), "golden_samples[0].label", "must be a string"),
        (lambda d: d["reference"]["age"].update(type="date"), "reference.age.type", "'number' or 'string'"),
        (lambda d: d.update(colour="red"), "colour", "not a field of the format"),
        (lambda d: d["inputs"][0].update(unit="years"), "inputs[0].unit", "not a field of the format"),
        (lambda d: d.update(budgets={"latency_p99_us": 50.0}), "budgets.size_bytes", "is missing"),
        (lambda d: d["input_layout"]["num"].append("height"), "input_layout.num[1]", "not in inputs"),
        (lambda d: d["golden_samples"][0].update(probabilities=[1.0]), "golden_samples[0].probabilities", "2 classes"),
    ],
)
def test_each_kind_of_error_names_its_field(edit: Any, field: str, problem: str) -> None:
    data = _minimal()
    edit(data)
    with pytest.raises(ManifestError) as caught:
        Manifest.from_json(data)
    assert caught.value.field == field
    assert field in str(caught.value) and problem in str(caught.value)
    assert isinstance(caught.value, ModelLoadError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("version", [2, 0])
def test_other_format_version_is_refused_naming_the_version(version: int) -> None:
    data = _minimal()
    data["format_version"] = version
    data["something_new"] = {}  # a future format's fields must not mask the real reason
    with pytest.raises(ManifestError, match=f"format_version: {version} is not supported") as caught:
        Manifest.from_json(data)
    assert caught.value.field == "format_version"


def test_read_manifest_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_input_layout_from_manifest_accepts_typed_and_json_forms() -> None:
    data = _minimal()
    typed = Manifest.from_json(copy.deepcopy(data))
    assert InputLayout.from_manifest(typed) == InputLayout.from_manifest(data)
    assert InputLayout(num=["age"], cat=[], missing_token="x").num == ("age",)


def test_key_folder_rule(tmp_path: Path) -> None:
    assert default_key_dir({"EDGESEG_KEY_DIR": str(tmp_path)}) == tmp_path
    assert default_public_key_path({"EDGESEG_KEY_DIR": str(tmp_path)}) == tmp_path / PUBLIC_KEY_NAME
    assert default_key_dir({}) == Path("~/.config/edgeseg/keys").expanduser()
