"""Tables as they come (issue 13): every column rule on small generated tables, the device's date
derivation against the factory's, and builds on tables that reproduce each defect the issue met
(a telecom charges column with " " cells, a dd-mm-yyyy sign-up date, a near-unique float amount).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edge_runtime.artifact import Manifest
from edge_runtime.dates import DateColumn, DateDeriver, derive
from edge_runtime.exceptions import ManifestError, SchemaError
from factory._columns import detect_date_format, parse_number_text
from factory._schema import CATEGORY_CAP, infer_schema, make_preprocessor, normalise_frame, render_schema
from factory.errors import FactoryInputError


def _kinds(frame: pd.DataFrame, **kwargs: object) -> dict[str, str]:
    schema = infer_schema(frame, refuse_identifiers=False, **kwargs)  # type: ignore[arg-type]
    return {info.name: info.kind for info in schema.columns_read}


def _amounts(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(10, 9000, n).round(2)


# ------------------------------------------------------------------ numbers as text
@pytest.mark.parametrize(
    ("cell", "number"),
    [
        ("1,234.50", 1234.5),
        ("$1,234.50", 1234.5),
        ("€ 12", 12.0),
        ("12.5%", 12.5),
        ("  7 ", 7.0),
        ("-$5.00", -5.0),
        ("(12.50)", -12.5),
        ("1 234", 1234.0),
        ("abc", None),
        ("12-03-2014", None),
        (" ", None),
    ],
)
def test_a_number_cell_is_read_without_its_units(cell: str, number: float | None) -> None:
    assert parse_number_text(cell) == number


def test_blank_cells_in_a_numbers_column_are_missing_numbers_not_categories() -> None:
    charges = [f"{v:.2f}" for v in _amounts(300)]
    for i in range(0, 300, 27):
        charges[i] = " "  # the telecom table's TotalCharges: 11 cells of one space
    frame = pd.DataFrame({"TotalCharges": charges, "other": np.arange(300) % 7})
    schema = infer_schema(frame)
    assert schema.num == ["TotalCharges", "other"] and schema.text_numbers == ["TotalCharges"]
    info = schema.columns_read[0]
    assert info.kind == "number" and "12 blank cells read as missing" in info.reason
    values = normalise_frame(frame, schema)["TotalCharges"]
    assert values.isna().sum() == 12
    assert values.iloc[1] == pytest.approx(float(charges[1]), rel=1e-6)


def test_separators_currency_and_percent_signs_are_numbers_and_the_reason_says_so() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "spend": [f"${v:,.2f}" for v in rng.uniform(0, 50000, 200)],
            "rate": [f"{v:.1f}%" for v in rng.uniform(0, 100, 200)],
            "plain": [f"{v:,.0f}" for v in rng.uniform(1000, 90000, 200)],
        }
    )
    schema = infer_schema(frame)
    assert set(schema.num) == {"spend", "rate", "plain"} and not schema.cat
    reasons = {info.name: info.reason for info in schema.columns_read}
    assert "currency signs" in reasons["spend"] and "thousands separators" in reasons["spend"]
    assert "percent signs" in reasons["rate"]
    normal = normalise_frame(frame, schema)
    assert normal["spend"].notna().all() and normal["spend"].max() > 1000


def test_a_mostly_text_column_with_some_numbers_stays_a_category() -> None:
    frame = pd.DataFrame({"plan": ["basic", "pro", "12", "basic", "pro", "gold"] * 20})
    assert _kinds(frame) == {"plan": "category"}


# ------------------------------------------------------------------ identifiers
def test_a_near_unique_float_amount_is_a_number_not_an_identifier() -> None:
    frame = pd.DataFrame({"TotalCharges": _amounts(500), "MonthlyCharges": _amounts(500, 1)})
    assert _kinds(frame) == {"TotalCharges": "number", "MonthlyCharges": "number"}
    assert infer_schema(frame).num == ["TotalCharges", "MonthlyCharges"]  # not refused


def test_near_unique_text_and_consecutive_or_id_named_integers_are_identifiers() -> None:
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame(
        {
            "customerID": [f"{rng.integers(1000, 9999)}-{i:05d}X" for i in range(n)],
            "row": np.arange(n) + 1,
            "account_id": rng.choice(10**9, n, replace=False),
            "age": rng.integers(18, 90, n),
            "income": rng.choice(10**6, n, replace=False),  # all distinct, scattered: a number
        }
    )
    kinds = _kinds(frame)
    assert kinds == {
        "customerID": "identifier",
        "row": "identifier",
        "account_id": "identifier",
        "age": "number",
        "income": "number",
    }
    with pytest.raises(FactoryInputError, match=r"column 'customerID' has 300 distinct values .* --drop customerID"):
        infer_schema(frame)


# ------------------------------------------------------------------ categories, booleans, constants
def test_a_high_cardinality_category_keeps_its_most_frequent_values_and_the_rest_is_other() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    cities = [f"city{int(v)}" for v in rng.zipf(1.3, n) % 400]
    frame = pd.DataFrame({"city": cities, "x": rng.normal(size=n)})
    schema = infer_schema(frame)
    assert schema.cat == ["city"] and schema.caps == {"city": CATEGORY_CAP}
    normal = normalise_frame(frame, schema)
    prep = make_preprocessor(schema).fit(normal)
    encoder = prep.named_steps["columns"].named_transformers_["cat"].named_steps["encode"]
    kept = list(encoder.categories_[0])
    assert len(kept) == CATEGORY_CAP
    counts = pd.Series(cities).value_counts()
    left_out = counts.drop(kept)
    assert counts[kept].min() >= left_out.max()  # the most frequent ones (ties: by value)
    rare = left_out.index[-1]
    codes = prep.transform(pd.DataFrame({"city": [rare, kept[0]], "x": [0.0, 0.0]}))
    assert codes[0, 1] == -1.0 and codes[1, 1] == 0.0  # a rare value is "other": the unseen code


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["Yes", "No"], "boolean"),
        (["TRUE", "false"], "boolean"),
        (["y", "n"], "boolean"),
        ([True, False], "boolean"),
        ([0, 1], "boolean"),
        (["red", "blue"], "category"),
    ],
)
def test_yes_no_true_false_and_0_1_columns_are_booleans(values: list[object], kind: str) -> None:
    frame = pd.DataFrame({"flag": values * 30, "x": np.arange(60) % 5})
    assert _kinds(frame)["flag"] == kind


def test_a_constant_column_is_dropped_with_a_note() -> None:
    frame = pd.DataFrame({"country": ["DE"] * 50, "x": np.arange(50) % 9})
    schema = infer_schema(frame)
    assert schema.columns == ["x"]
    dropped = schema.columns_read[0]
    assert dropped.kind == "dropped" and "constant" in dropped.reason and "'DE'" in dropped.reason


def test_an_all_empty_column_is_refused_naming_it() -> None:
    frame = pd.DataFrame({"notes": [" ", ""] * 10, "x": np.arange(20)})
    with pytest.raises(FactoryInputError, match="column 'notes' is empty in every row"):
        infer_schema(frame)


# ------------------------------------------------------------------ dates
def _dates(n: int, fmt: str, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2012, 1, 1)
    return [(start + dt.timedelta(days=int(d), minutes=int(m))).strftime(fmt) for d, m in zip(
        rng.integers(0, 1000, n), rng.integers(0, 1440, n), strict=True
    )]  # fmt: skip


@pytest.mark.parametrize(
    "fmt",
    ["%d-%m-%Y", "%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d %b %Y", "%d-%b-%y"],
)
def test_common_date_formats_are_detected(fmt: str) -> None:
    found = detect_date_format(_dates(200, fmt))
    assert found is not None
    assert dt.datetime.strptime(_dates(1, fmt, seed=5)[0], found[0])  # the detected format reads them


def test_a_dd_mm_yyyy_signup_date_becomes_numbers_not_582_categories() -> None:
    n = 400
    frame = pd.DataFrame({"Dt_Customer": _dates(n, "%d-%m-%Y"), "Income": _amounts(n)})
    schema = infer_schema(frame)
    assert not schema.cat
    assert schema.num == ["Income", "Dt_Customer_days_before", "Dt_Customer_month", "Dt_Customer_weekday"]
    (spec,) = schema.dates
    assert spec.format == "%d-%m-%Y"
    latest = max(dt.datetime.strptime(v, "%d-%m-%Y") for v in frame["Dt_Customer"])
    assert spec.reference == latest  # default reference: the latest date of the table
    normal = normalise_frame(frame, schema)
    first = dt.datetime.strptime(frame["Dt_Customer"][0], "%d-%m-%Y")
    assert normal["Dt_Customer_days_before"][0] == (latest - first).days
    assert normal["Dt_Customer_month"][0] == first.month and normal["Dt_Customer_weekday"][0] == first.weekday()
    assert any("Dt_Customer_days_before" in row[1] for row in render_schema(schema))


def test_date_column_flag_names_a_column_and_its_format_and_a_bad_one_is_refused() -> None:
    frame = pd.DataFrame({"joined": _dates(100, "%Y%m%d"), "x": np.arange(100) % 3})
    schema = infer_schema(
        frame, date_columns={"joined": "%Y%m%d"}, reference_date=dt.datetime(2020, 1, 1)
    )  # 8-digit runs would otherwise be numbers
    assert [s.column for s in schema.dates] == ["joined"] and schema.dates[0].reference == dt.datetime(2020, 1, 1)
    with pytest.raises(FactoryInputError, match="--date-column x: no common date format"):
        infer_schema(frame.assign(x=["a", "b"] * 50), date_columns={"x": None})


def test_the_device_derives_exactly_the_numbers_the_factory_trained_on() -> None:
    n = 300
    values = _dates(n, "%d/%m/%Y %H:%M:%S", seed=4)
    values[3] = " "  # missing
    frame = pd.DataFrame({"last_visit": values, "x": np.arange(n) % 4})
    schema = infer_schema(frame)
    normal = normalise_frame(frame, schema)
    manifest_dates = [spec.to_manifest() for spec in schema.dates]
    device = DateDeriver([DateColumn(d["name"], d["format"], d["reference"], d["outputs"]) for d in manifest_dates])
    derived_names = list(schema.dates[0].outputs.values())
    for i in range(n):
        record = device.record({"last_visit": values[i], "x": 1})
        assert "last_visit" not in record
        for name in derived_names:
            device_value = record[name]
            factory_value = normal[name].iloc[i]
            if math.isnan(factory_value):
                assert device_value is None
            else:  # the graph reads float32: equal there
                assert np.float32(device_value) == np.float32(factory_value)
    columns = device.columns_of({"last_visit": np.array(values, dtype=object)})
    for name in derived_names:
        np.testing.assert_array_equal(
            np.asarray(columns[name], dtype=np.float32), normal[name].to_numpy(dtype=np.float32)
        )


def test_the_device_refuses_a_date_in_another_format_naming_field_value_and_format() -> None:
    column = DateColumn("signup", "%d-%m-%Y", "2014-12-31", {"days_before": "signup_days_before"})
    with pytest.raises(SchemaError, match=r"field 'signup': must be a date in the format '%d-%m-%Y'") as caught:
        DateDeriver([column]).record({"signup": "2014/03/21"})
    assert caught.value.value == "2014/03/21"
    assert all(math.isnan(v) for v in derive(" ", "%d-%m-%Y", dt.datetime(2014, 12, 31)))  # blank: missing
    assert derive("21-03-2014", "%d-%m-%Y", dt.datetime(2014, 3, 31)) == (10.0, 3.0, 4.0)  # a Friday


def test_the_manifest_declares_dates_and_refuses_a_derived_input_that_is_not_a_number() -> None:
    date = {
        "name": "signup",
        "format": "%d-%m-%Y",
        "reference": "2014-12-31T00:00:00",
        "outputs": {"days_before": "signup_days_before"},
    }
    base: dict[str, Any] = {
        "format_version": 1,
        "name": "m",
        "version": "v",
        "model_version": "m/v",
        "input_layout": {"num": ["signup_days_before"], "cat": ["plan"], "missing_token": "__missing__"},
        "inputs": [
            {"name": "signup_days_before", "type": "number", "required": False},
            {"name": "plan", "type": "string", "required": False},
        ],
        "target": {"name": "y", "classes": ["a", "b"], "label_rule": None},
        "reference": {},
        "golden_samples": [],
        "onnx_sha256": "0" * 64,
        "dates": [date],
    }
    manifest = Manifest.from_json(base)
    assert manifest.to_json() == base and manifest.dates is not None
    bad = {**base, "dates": [{**date, "outputs": {"days_before": "plan"}}]}
    with pytest.raises(ManifestError, match=r"dates\[0\]\.outputs\.days_before") as caught:
        Manifest.from_json(bad)
    assert caught.value.field == "dates[0].outputs.days_before"
    unknown = {**base, "dates": [{**date, "outputs": {"year": "signup_days_before"}}]}
    with pytest.raises(ManifestError, match="must be one of"):
        Manifest.from_json(unknown)


# ------------------------------------------------------------------ builds on the issue's defects
def _telecom_like(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """The telecom churn table's defects: an id column, " " in TotalCharges (a near-unique float
    column), Yes/No flags, a 0/1 column, and a dd-mm-yyyy sign-up date (the marketing table's)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    monthly = rng.uniform(18, 120, n).round(2)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    start = dt.datetime(2012, 1, 1)
    signup = [start + dt.timedelta(days=int(d)) for d in rng.integers(0, 1000, n)]
    logit = -1 + 2.5 * (contract == "Month-to-month") - tenure / 30 + np.array([d.month for d in signup]) / 6 - 1
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return pd.DataFrame(
        {
            "customerID": [f"{i:04d}-{''.join(rng.choice(list('ABCDEFGHIJ'), 5))}" for i in range(n)],
            "SeniorCitizen": rng.integers(0, 2, n),
            "Partner": rng.choice(["Yes", "No"], n),
            "tenure": tenure,
            "Contract": contract,
            "MonthlyCharges": monthly,
            "TotalCharges": [" " if t == 0 else f"{t * m:.2f}" for t, m in zip(tenure, monthly, strict=True)],
            "Dt_Customer": [d.strftime("%d-%m-%Y") for d in signup],
            "Churn": churn,
        }
    )


def test_a_table_with_the_issues_defects_builds_with_the_right_types_and_the_device_reads_its_dates(
    tmp_path: Path, signing_public_key: Path
) -> None:
    from edge_runtime import Classifier
    from factory import build

    table = _telecom_like()
    with pytest.raises(FactoryInputError, match="'customerID' .* identifier: drop it with --drop customerID"):
        build(table, target="Churn", out_dir=tmp_path, time_budget_s=2, learners=["lgbm"])
    result = build(
        table, target="Churn", drop=["customerID"], metric="roc_auc", out_dir=tmp_path, time_budget_s=3,
        learners=["lgbm"], name="telecom",
    )  # fmt: skip
    kinds = {c["name"]: c["kind"] for c in result.manifest["data"]["schema"]}
    assert kinds == {
        "SeniorCitizen": "boolean",
        "Partner": "boolean",
        "tenure": "number",
        "Contract": "category",
        "MonthlyCharges": "number",
        "TotalCharges": "number",
        "Dt_Customer": "date",
    }
    manifest = result.typed_manifest
    assert manifest.dates is not None and manifest.dates[0].format == "%d-%m-%Y"
    assert "Dt_Customer_days_before" in manifest.input_layout.num and "Dt_Customer" not in manifest.input_layout.cat
    # The device gets the table's own cells (date strings, numbers) and derives the rest itself.
    clf = Classifier.load(result.artifact_dir, signing_public_key)
    test_rows = table.iloc[result.split.test]
    records = []
    for _, row in test_rows.iterrows():
        charges = parse_number_text(row["TotalCharges"])
        records.append(
            {
                "SeniorCitizen": int(row["SeniorCitizen"]),
                "Partner": row["Partner"],
                "tenure": int(row["tenure"]),
                "Contract": row["Contract"],
                "MonthlyCharges": float(row["MonthlyCharges"]),
                "TotalCharges": charges,
                "Dt_Customer": row["Dt_Customer"],
            }
        )
    batch = clf.classify_many(records)
    np.testing.assert_array_equal(np.asarray(batch.segments), result.test_predictions)
    np.testing.assert_allclose(np.asarray(batch.probabilities), result.test_probabilities, atol=1e-6)
    single = clf.classify(records[0])
    assert single.segment == result.test_predictions[0]


def test_inspect_shows_every_column_its_type_and_why_without_refusing_the_identifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from factory.cli import main

    csv = tmp_path / "telecom.csv"
    _telecom_like(200).to_csv(csv, index=False)
    assert main(["inspect", "--data", str(csv), "--target", "Churn", "--json"]) == 0
    columns = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert "Churn" not in columns
    assert columns["customerID"]["kind"] == "identifier" and columns["customerID"]["inputs"] == []
    assert columns["TotalCharges"]["kind"] == "number" and "blank cell" in columns["TotalCharges"]["reason"]
    assert columns["Dt_Customer"]["inputs"] == ["Dt_Customer_days_before", "Dt_Customer_month", "Dt_Customer_weekday"]
    assert all({"missing_share", "distinct", "reason"} <= set(c) for c in columns.values())
    assert main(["inspect", "--data", str(csv), "--target", "nope"]) == 2
    assert "column 'nope' is not in the data" in capsys.readouterr().err
