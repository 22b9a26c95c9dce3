"""The input contract at the till (issue 14, item 1), on a real default-job model.

Strict (default): an input training never saw missing is required, an unknown field name is an
error naming the closest known name; an unseen category classifies and is counted; every
result says how many inputs were missing / unseen. Lenient: gaps imputed, unknown fields
ignored and counted. The range check is inclusive at the training extremes as float32 saw them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import Classifier, Runtime, SchemaError


@pytest.fixture(scope="module")
def strict(till_artifact: Path, signing_public_key: Path) -> Classifier:
    return Classifier.load(till_artifact, signing_public_key)


@pytest.fixture(scope="module")
def lenient(till_artifact: Path, signing_public_key: Path) -> Classifier:
    return Classifier.load(till_artifact, signing_public_key, contract="lenient")


def _record(clf: Classifier) -> dict[str, object]:
    return dict(clf.manifest.golden_samples[0].record)


def test_an_empty_record_is_refused_naming_a_required_input(strict: Classifier) -> None:
    with pytest.raises(SchemaError) as caught:
        strict.classify({})
    assert caught.value.field == "recency_days"
    assert "is required" in caught.value.rule and "never had it missing" in caught.value.rule
    # inter_purchase_days was missing for 41 % of training customers: it stays optional
    assert "inter_purchase_days" not in strict.validator.required_names
    assert "recency_days" in strict.validator.required_names


@pytest.mark.parametrize(
    ("wrong", "right"), [("recency", "recency_days"), ("monetry", "monetary"), ("Country", "country")]
)
def test_a_misspelled_field_is_an_error_naming_the_closest_known_name(
    strict: Classifier, wrong: str, right: str
) -> None:
    record = _record(strict)
    record[wrong] = record.pop(right)
    with pytest.raises(SchemaError) as caught:
        strict.classify(record)
    assert caught.value.field == wrong
    assert f"did you mean {right!r}" in str(caught.value)
    assert "lenient" in str(caught.value)  # and how to opt out


def test_a_row_of_the_training_table_is_classified_its_target_and_dropped_columns_ignored(
    strict: Classifier,
) -> None:
    """A till (or an analyst) sending rows of the table the model came from, target included,
    is not refused under the strict contract; a misspelling of that column still is."""
    ignored = strict.manifest.ignored_fields or ()
    assert "value_tier" in ignored and "customer_id" not in ignored  # the target; the id is the id_field
    row = {**_record(strict), **{name: "x" for name in ignored}}
    assert strict.classify(row).segment in strict.classes
    columns = {name: [value, value] for name, value in row.items()}
    assert len(strict.classify_many(columns).segments) == 2
    assert strict.validator.stats.extra_fields == {}  # expected columns, not extras
    with pytest.raises(SchemaError) as caught:
        strict.classify({**_record(strict), "value_teir": "top"})
    assert caught.value.field == "value_teir"


def test_the_id_field_is_not_unknown_and_an_unseen_country_is_counted(
    till_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    with Runtime(
        till_artifact, public_key=signing_public_key, outbox_path=tmp_path / "o.db", device_id="till-1",
        secret="s" * 32,
    ) as runtime:  # fmt: skip
        record = {**_record(runtime.classifier), "customer_id": "17850", "country": "Narnia"}
        result = runtime.classify(record)
        assert result.segment in runtime.classifier.classes
        assert (result.missing_inputs, result.unknown_categories) == (0, 1)
        assert result.to_dict()["unknown_categories"] == 1
        inputs = runtime.status()["inputs"]
        assert inputs["unknown_category"] == {"country": 1}
        assert inputs["records_with_unknown"] == 1
        assert inputs["records_with_missing"] == 0


def test_lenient_imputes_gaps_and_ignores_unknown_fields(lenient: Classifier) -> None:
    lenient.validator.stats.reset()
    result = lenient.classify({"recency": 3})
    assert result.segment in lenient.classes
    assert result.missing_inputs == 13
    stats = lenient.input_stats
    assert stats["extra_fields"] == {"recency": 1}
    assert stats["records_with_missing"] == 1
    assert stats["missing"]["recency_days"] == 1


def test_the_contract_switch_is_validated(till_artifact: Path, signing_public_key: Path) -> None:
    with pytest.raises(ValueError, match="contract"):
        Classifier.load(till_artifact, signing_public_key, contract="loose")


def test_no_out_of_range_warning_at_the_training_maximum(strict: Classifier, caplog: pytest.LogCaptureFixture) -> None:
    """The manifest keeps float32 extremes (1590.8199462890625); a till sends 1590.82."""
    caplog.set_level(logging.WARNING, logger="edge_runtime")
    strict.validator.stats.reset()
    checked = 0
    for spec in strict.manifest.inputs:
        if spec.type != "number" or spec.max is None:
            continue
        shown = float(str(np.float32(spec.max)))  # the shortest text of the float32 maximum
        strict.classify({**_record(strict), spec.name: shown})
        checked += shown != spec.max
    assert checked, "no input whose float32 maximum prints differently from its float64 value"
    assert strict.input_stats["out_of_range"] == {}
    assert not [r for r in caplog.records if "outside the training range" in r.getMessage()]
    recency = strict.manifest.input("recency_days")
    assert recency.max is not None
    strict.classify({**_record(strict), "recency_days": recency.max + 1})
    assert strict.input_stats["out_of_range"] == {"recency_days": 1}


def test_the_cli_refuses_wrong_records_with_exit_1_and_lenient_classifies(till_artifact: Path) -> None:
    clf_lines = "{}\n" + json.dumps({"recency": 3, "monetry": 10.0}) + "\n"
    run = [sys.executable, "-m", "edge_runtime.cli", "classify", "--dry-run", "--artifact", str(till_artifact)]
    done = subprocess.run(run, input=clf_lines, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "line 1: field 'recency_days': is required" in done.stderr
    assert "line 2: field 'recency': is not an input of this model" in done.stderr
    assert "did you mean 'recency_days'?" in done.stderr
    assert done.stdout == ""
    done = subprocess.run([*run, "--contract", "lenient"], input=clf_lines, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["missing_inputs"] for row in rows] == [13, 13]
