"""Schema validation of records: every rule, its exact message, its counters, and a fuzz."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from edge_toy_artifact import GOLDEN_RECORDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime import Classifier, SchemaError
from edge_runtime.encoding import InputLayout, encode_records

FIELDS = ["Age", "Work_Experience", "Family_Size", "Gender", "Ever_Married", "Graduated",
          "Profession", "Spending_Score", "Var_1"]  # fmt: skip


@pytest.fixture(scope="module")
def clf(toy_artifact, toy_public_key) -> Classifier:
    return Classifier.load(toy_artifact, toy_public_key)


def good(**changes):
    record = dict(GOLDEN_RECORDS[0])
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("changes", "field", "value", "message"),
    [
        ({"Age": None}, "Age", None, "field 'Age': is required (got None)"),
        ({"Age": True}, "Age", True,
         "field 'Age': must be a number, not a boolean (got True)"),
        ({"Age": "38"}, "Age", "38", "field 'Age': must be a number (got '38')"),
        ({"Age": [38]}, "Age", [38], "field 'Age': must be a number (got [38])"),
        ({"Work_Experience": math.nan}, "Work_Experience", math.nan,
         "field 'Work_Experience': must be a finite number (got nan)"),
        ({"Family_Size": -math.inf}, "Family_Size", -math.inf,
         "field 'Family_Size': must be a finite number (got -inf)"),
        ({"Family_Size": 1e39}, "Family_Size", 1e39,
         "field 'Family_Size': must be within the float32 range (got 1e+39)"),
        ({"Family_Size": 10**400}, "Family_Size", 10**400, None),
        ({"Gender": 1}, "Gender", 1, "field 'Gender': must be a string (got 1)"),
        ({"Gender": False}, "Gender", False, "field 'Gender': must be a string (got False)"),
        ({"Gender": ["Male"]}, "Gender", ["Male"],
         "field 'Gender': must be a string (got ['Male'])"),
        ({"Profession": "x" * 33}, "Profession", "x" * 33,
         f"field 'Profession': must be at most 32 characters (got {'x' * 33!r})"),
        ({"Var_1": "a\x00b"}, "Var_1", "a\x00b",
         "field 'Var_1': must be valid text (no NUL characters) (got 'a\\x00b')"),
        ({"Var_1": "\ud800"}, "Var_1", "\ud800",
         "field 'Var_1': must be valid text (no lone surrogates) (got '\\ud800')"),
    ],
)  # fmt: skip
def test_invalid_field_is_refused_with_field_value_and_rule(clf, changes, field, value, message):
    record = good(**changes)
    with pytest.raises(SchemaError) as caught:
        clf.classify(record)
    error = caught.value
    assert error.field == field
    assert error.value is value or error.value == value
    if message is not None:
        assert str(error) == message


def test_absent_required_field_and_non_mapping_record(clf):
    record = good()
    del record["Age"]
    with pytest.raises(SchemaError, match=r"^field 'Age': is required \(got None\)$"):
        clf.classify(record)
    with pytest.raises(SchemaError) as caught:
        clf.classify(["Age", 38])
    assert str(caught.value) == ("field '<record>': must be a mapping of field names to values (got ['Age', 38])")


def test_long_values_are_shortened_in_the_message_only(clf):
    value = "y" * 10_000
    with pytest.raises(SchemaError) as caught:
        clf.classify(good(Profession=value))
    assert caught.value.value == value
    assert len(str(caught.value)) < 200
    assert str(caught.value).endswith("…)")


def test_missing_optional_fields_classify_like_the_shared_encoder(clf):
    record = {"Age": 50}  # everything else missing
    result = clf.classify(record)
    layout = InputLayout.from_manifest(clf.manifest)
    feeds = encode_records(layout, [record])
    labels, probabilities = clf._session.run(None, feeds)
    assert result.segment == labels[0]
    assert list(result.probabilities.values()) == probabilities[0].tolist()
    assert (clf.classify(good(Gender="")).probabilities
            == clf.classify(good(Gender=None)).probabilities)  # fmt: skip


def test_numpy_numbers_and_int_are_accepted(clf):
    a = clf.classify(good(Age=40, Family_Size=2.0))
    b = clf.classify(good(Age=np.int64(40), Family_Size=np.float32(2.0)))
    assert a == b


def test_unknown_category_extra_fields_and_out_of_range_are_counted(toy_artifact, toy_public_key, caplog):
    clf = Classifier.load(toy_artifact, toy_public_key, contract="lenient")  # lenient: extra fields counted
    caplog.set_level(logging.WARNING, logger="edge_runtime")
    first = clf.classify(good(Profession="Astronaut", till="7", ID="123"))
    assert (first.missing_inputs, first.unknown_categories) == (0, 1)
    clf.classify(good(Profession="Astronaut", Age=150))
    result = clf.classify(good(Age=151, Work_Experience=-3.0))
    assert result.segment in clf.classes
    stats = clf.input_stats
    assert stats == {
        "records": 3,
        "refused": 0,
        "unknown_category": {"Profession": 2},
        "out_of_range": {"Age": 2, "Work_Experience": 1},
        "extra_fields": {"till": 1},  # the id field is not an extra field
        "missing": {},
        "records_with_missing": 0,
        "records_with_unknown": 2,
    }
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge_runtime"]
    assert warnings == [
        "field 'Age': 150 is outside the training range [18, 89]; classified anyway "
        "(further occurrences are only counted in stats)",
        "field 'Work_Experience': -3.0 is outside the training range [0, 14]; classified "
        "anyway (further occurrences are only counted in stats)",
    ]


def test_out_of_range_policy_fail(toy_artifact, toy_public_key):
    strict = Classifier.load(toy_artifact, toy_public_key, out_of_range="fail")
    with pytest.raises(SchemaError) as caught:
        strict.classify(good(Age=150))
    assert str(caught.value) == "field 'Age': must be within the training range [18, 89] (got 150)"
    with pytest.raises(ValueError) as caught_param:
        Classifier.load(toy_artifact, toy_public_key, out_of_range="clip")
    assert str(caught_param.value) == (
        "The 'out_of_range' parameter of Classifier must be one of ('count', 'fail'). Got 'clip' instead."
    )


def test_classify_many_records_and_columns_agree_with_single(clf):
    records = [good(), *GOLDEN_RECORDS, good(Profession="Astronaut", Age=70.5)]
    singles = [clf.classify(r) for r in records]
    batch = clf.classify_many(records)
    # a batch reports its missing / unseen counts in input_stats, not per row: compare the rest
    singles = [single[:5] for single in singles]
    assert [row[:5] for row in batch] == singles
    columns = {name: [r.get(name) for r in records] for name in FIELDS}
    assert [row[:5] for row in clf.classify_many(columns)] == singles
    # numpy columns take the vectorised path
    numeric = {
        "Age": np.array([22, 38, 67, 40], dtype=np.int64),
        "Family_Size": np.array([4.0, 3.0, 1.0, 2.0]),
        "Gender": np.array(["Male", "Female", "", "Nobody"]),
    }
    as_records = [
        {"Age": 22, "Family_Size": 4.0, "Gender": "Male"},
        {"Age": 38, "Family_Size": 3.0, "Gender": "Female"},
        {"Age": 67, "Family_Size": 1.0, "Gender": None},
        {"Age": 40, "Family_Size": 2.0, "Gender": "Nobody"},
    ]
    assert [row[:5] for row in clf.classify_many(numeric)] == [clf.classify(r)[:5] for r in as_records]


def test_classify_many_names_the_row(clf):
    records = [good(), good(), good(Age=False)]
    with pytest.raises(SchemaError) as caught:
        clf.classify_many(records)
    assert str(caught.value) == "record 2: field 'Age': must be a number, not a boolean (got False)"
    assert caught.value.row == 2
    with pytest.raises(SchemaError) as caught:
        clf.classify_many({"Age": np.array([20.0, np.inf])})
    assert str(caught.value) == "record 1: field 'Age': must be a finite number (got inf)"
    with pytest.raises(SchemaError) as caught:  # NaN in a numpy column is missing; Age is required
        clf.classify_many({"Age": np.array([20.0, np.nan])})
    assert str(caught.value) == "record 1: field 'Age': is required (got None)"
    with pytest.raises(SchemaError) as caught:
        clf.classify_many({"Age": [20, 30], "Gender": ["Male"]})
    assert str(caught.value) == "field 'Gender': column length must be 2 (got 1)"


def test_large_batch_uses_threaded_session_and_matches(clf):
    n = 1000
    columns = {
        "Age": np.linspace(18, 89, n),
        "Work_Experience": np.linspace(0, 14, n),
        "Family_Size": np.full(n, 3.0),
        "Profession": np.array(["Doctor", "Lawyer", "Astronaut", ""] * (n // 4)),
    }
    batch = clf.classify_many(columns)
    assert len(batch) == n
    for i in (0, 1, 2, 3, 500, 999):
        record = {name: column[i].item() for name, column in columns.items()}
        if record["Profession"] == "":
            record["Profession"] = None
        expected = clf.classify(record)
        assert batch[i].segment == expected.segment
        np.testing.assert_allclose(
            list(batch[i].probabilities.values()), list(expected.probabilities.values()), atol=1e-6
        )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["Male", "Female", "Yes", "Cat_4", "", "__missing__"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=4),
)
records = st.dictionaries(
    st.one_of(st.sampled_from([*FIELDS, "ID", "extra"]), st.text(max_size=5)), scalars, max_size=12
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=st.one_of(records, scalars))
def test_fuzz_only_schema_errors_and_they_name_a_field(clf, record):
    try:
        result = clf.classify(record)
    except SchemaError as exc:
        # an input, or (strict contract) the unknown field the record holds
        assert exc.field in {*FIELDS, "<record>"} or (isinstance(record, dict) and exc.field in record)
        assert exc.rule
        assert str(exc).startswith(f"field {exc.field!r}: {exc.rule} (got ")
        if exc.field != "<record>":
            assert exc.value is None or exc.value is record.get(exc.field)
    else:
        assert result.segment in clf.classes
        assert math.isclose(sum(result.probabilities.values()), 1.0, rel_tol=1e-5)


columns_strategy = st.dictionaries(
    st.sampled_from([*FIELDS, "ID", "extra"]),
    st.one_of(
        st.lists(scalars, min_size=3, max_size=3),
        st.sampled_from([np.array([1.0, np.nan, 3.0]), np.array(["a", "", "Male"]),
                         np.array([True, False, True]), np.array([1, 2, 3]),
                         np.array([[1.0], [2.0], [3.0]]), np.array([1e39, 0.0, 1.0])]),
        scalars,
    ),
    min_size=1,
    max_size=6,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=columns_strategy)
def test_fuzz_columns_only_schema_errors_naming_a_field(clf, columns):
    try:
        batch = clf.classify_many(columns)
    except SchemaError as exc:
        assert exc.field in {*FIELDS, "<columns>", *columns}
        assert exc.rule
    else:
        assert len(batch) == next(len(v) for k, v in columns.items() if k in FIELDS)
        assert set(batch.segments.tolist()) <= set(clf.classes)


def test_reused_buffers_are_safe_across_threads(clf):
    import threading

    records = [*GOLDEN_RECORDS, good(Age=70.5, Profession="Doctor"), {"Age": 19}]
    expected = [clf.classify(r) for r in records]
    failures: list[int] = []

    def work(offset: int) -> None:
        for i in range(600):
            k = (i + offset) % len(records)
            if clf.classify(records[k]) != expected[k]:
                failures.append(k)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
