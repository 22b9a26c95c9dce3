"""``edge-runtime schema`` / ``example`` on a real default-job model (issue 14, item 2): the input
format of the default model is documented by the model itself, units and meaning included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_runtime.artifact import read_manifest

CLI = [sys.executable, "-m", "edge_runtime.cli"]


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_the_manifest_carries_a_feature_dictionary_with_units(till_artifact: Path) -> None:
    manifest = read_manifest(till_artifact)
    dictionary = manifest.feature_dictionary
    assert dictionary is not None
    assert set(dictionary) == {spec.name for spec in manifest.inputs}  # all 13 RFM+X inputs
    assert dictionary["recency_days"]["unit"] == "days"
    assert "2011-09-10" in dictionary["recency_days"]["meaning"]  # relative to the cutoff date
    assert dictionary["monetary"]["unit"] == "GBP"
    assert dictionary["is_dormant"]["unit"] == "yes/no"


def test_schema_prints_every_input_with_unit_required_range_and_example(till_artifact: Path) -> None:
    done = _run("schema", str(till_artifact))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    manifest = read_manifest(till_artifact)
    for spec in manifest.inputs:
        assert any(line.startswith(spec.name + " ") for line in lines), spec.name
    recency = next(line for line in lines if line.startswith("recency_days "))
    assert "days" in recency and "yes" in recency and "in training" in recency
    assert "GBP" in next(line for line in lines if line.startswith("monetary "))
    assert "no, yes" in next(line for line in lines if line.startswith("is_dormant "))
    rows = [json.loads(line) for line in _run("schema", str(till_artifact), "--json").stdout.splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert by_name["inter_purchase_days"]["required"] is False  # missing for one-day buyers
    assert by_name["frequency"]["required"] is True
    assert by_name["country"]["allowed"][:2] == ["Australia", "Austria"]


def test_example_writes_a_record_the_strict_contract_classifies(till_artifact: Path) -> None:
    done = _run("example", str(till_artifact))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["customer_id"] and len(record) == 14  # the id field and the 13 inputs
    classified = _run("classify", "--dry-run", "--artifact", str(till_artifact), stdin=done.stdout)
    assert classified.returncode == 0, classified.stderr
    result = json.loads(classified.stdout)
    assert result["segment"] in read_manifest(till_artifact).classes
    assert result["missing_inputs"] == 0
