"""The skew gate (issue 11): the till's incremental features equal the factory's, or the build fails.

The factory's pandas ``build_customer_features`` is the reference; ``factory.skew`` replays a log
through ``edge_runtime.customer_state`` and compares every customer and feature. These tests
show the gate passing on both real logs, failing (with a usable message) when a rule on the
device drifts, and holding on random logs built to hit the awkward rules.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_runtime.customer_state as device
from edge_runtime.customer_state import CustomerState, FeatureProgram, NoRecordError
from factory.errors import FactoryInputError
from factory.features import FEATURE_COLUMNS, LogColumns, build_customer_features, default_cutoff, load_transactions
from factory.features import stock_code_family as factory_family
from factory.skew import SkewError, check_skew, compare_records, log_events, program_for_log

REPO = Path(__file__).resolve().parents[2]
RETAIL = REPO / "data" / "online_retail" / "online_retail.parquet"


def _ref(customer_id: str) -> str:
    return hashlib.sha256(customer_id.encode()).hexdigest()[:32]


@pytest.fixture(scope="module")
def retail() -> pd.DataFrame:
    return load_transactions(RETAIL)[0]


def test_gate_passes_on_the_bundled_online_retail_log(retail: pd.DataFrame) -> None:
    cutoff = default_cutoff(retail)
    summary = check_skew(retail, cutoff, columns=LogColumns.online_retail())
    assert summary["customers"] == len(build_customer_features(retail, cutoff))
    assert summary["features"] == list(FEATURE_COLUMNS) == list(device.FEATURE_NAMES)
    assert summary["values_compared"] == summary["customers"] * len(FEATURE_COLUMNS)
    assert summary["lines_replayed"] == int((retail["timestamp"] < cutoff).sum())
    assert 0 <= summary["max_relative_difference"] <= 1e-6
    assert summary["feature_program"] == FeatureProgram.online_retail().to_json()
    assert summary["cutoff"] == "2011-09-10T00:00:00"


def test_gate_passes_on_the_cdnow_log(shared_data: Path) -> None:
    path = shared_data / "retail_transactions" / "CDNOW_master.txt"
    if not path.is_file():
        pytest.skip(f"CDNOW log not found at {path} (set EDGESEG_SHARED_DATA)")
    log = load_transactions(path, LogColumns.cdnow())[0]
    summary = check_skew(log, default_cutoff(log), columns=LogColumns.cdnow())
    assert summary["features"] == [
        "recency_days", "frequency", "monetary", "tenure_days", "avg_basket_value", "avg_basket_items",
        "return_rate", "inter_purchase_days", "is_dormant",
    ]  # fmt: skip
    assert summary["customers"] == len(build_customer_features(log, default_cutoff(log)))
    assert summary["max_relative_difference"] <= 1e-6


def _three_digit_family(code: str) -> str:
    """A plausible but different category rule: three-digit stock-code families."""
    return code[:3] if code[:3].isdigit() else "non-merchandise"


def test_gate_fails_naming_customer_feature_and_values_when_a_device_rule_drifts(
    retail: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = retail.loc[retail["timestamp"] < "2011-01-15"]
    monkeypatch.setattr(device, "stock_code_family", _three_digit_family)
    with pytest.raises(SkewError) as caught:
        check_skew(log, "2011-01-15", columns=LogColumns.online_retail())
    err = caught.value
    expected = build_customer_features(log, "2011-01-15")
    assert err.feature in ("category_breadth", "top_category_share")
    assert err.factory_value == expected.loc[err.customer, err.feature]
    assert err.device_value != pytest.approx(err.factory_value)
    assert str(err).startswith(
        f"skew gate: customer {err.customer!r} feature {err.feature!r}: "
        f"factory {err.factory_value!r}, device {err.device_value!r} (relative difference"
    )
    assert err.mismatches > 1


def test_gate_fails_when_the_device_counts_dormancy_differently(retail: pd.DataFrame) -> None:
    log = retail.loc[retail["timestamp"] < "2011-03-01"]
    with pytest.raises(SkewError, match=r"feature 'is_dormant': factory 'yes', device 'no'"):
        check_skew(log, "2011-03-01", program=program_for_log(log, LogColumns.online_retail(), dormant_days=45))


def test_gate_refuses_a_program_that_cannot_express_the_logs_returns(retail: pd.DataFrame) -> None:
    log = retail.loc[retail["timestamp"] < "2011-01-01"].copy()
    log.loc[log["invoice_id"].str.startswith("C"), "is_return"] = False  # a log cleaned under another rule
    with pytest.raises(SkewError, match="is a purchase in the log but a return under the device program"):
        check_skew(log, "2011-01-01", columns=LogColumns.online_retail())


def test_a_state_built_at_head_office_continues_on_the_till(retail: pd.DataFrame, tmp_path: Path) -> None:
    """Bootstrap: the factory's replay up to a date, then the till's events, equals events alone."""
    log = retail.loc[retail["timestamp"] < "2011-02-01"]
    snapshot = tmp_path / "store-snapshot.sqlite"
    check_skew(log, "2011-01-15", columns=LogColumns.online_retail(), state_path=snapshot)
    program = program_for_log(log, LogColumns.online_retail())
    events = [(event, _ref(customer)) for event, customer in log_events(log, program)]
    later = [(e, r) for e, r in events if e["timestamp"] >= "2011-01-15"]
    with CustomerState(snapshot, clock=lambda: 2e9) as till, CustomerState(tmp_path / "alone.sqlite", program) as alone:
        till.observe_many(later)
        alone.observe_many(events)
        refs = sorted({r for _, r in events})
        assert list(till.refs()) == list(alone.refs()) == refs
        records = {}
        for r in refs:
            try:
                records[r] = alone.materialise(r, "2011-02-01")
            except NoRecordError:
                continue
        continued = {r: till.materialise(r, "2011-02-01") for r in records}
    assert len(records) > 100
    assert compare_records(pd.DataFrame.from_dict(records, orient="index"), continued, rel_tol=1e-12) <= 1e-12


# ------------------------------------------------------------------------------------ property

CUSTOMERS = ("1", "2", "17850", "R")  # "R" is seen only through returns
PRODUCTS = ("85123A", "22423", "POST", "84029E", "22960", "M", "10002")
PRICES = (0.1, 0.29, 1.25, 2.55, 3.39, 12.75, 165.0)
BASE = pd.Timestamp("2011-01-01")


@st.composite
def transaction_logs(draw: st.DrawFn, days: int = 45) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A cleaned log (the canonical frame) exercising every rule the features depend on.

    Coarse times (midnight, 09:00, 23:00; 0/1/59 s) give same-second lines and day
    boundaries; returns are negative quantities or cancellations (a "C" invoice, or a flag
    when the invoice is missing), sometimes with positive quantities; invoice ids may be
    missing, or absent from the log altogether; one customer only ever returns goods.
    """
    with_invoices = draw(st.booleans())
    category_rule = draw(st.sampled_from(["stock_code_family", "column"]))
    rows = []
    for _ in range(draw(st.integers(1, 30))):
        customer = draw(st.sampled_from(CUSTOMERS))
        day = draw(st.integers(0, days))
        ts = BASE + pd.Timedelta(
            days=day, hours=draw(st.sampled_from([0, 9, 23])), seconds=draw(st.sampled_from([0, 1, 59]))
        )
        kind = "return" if customer == "R" else draw(st.sampled_from(["purchase", "purchase", "return", "cancel"]))
        quantity = float(draw(st.integers(1, 12)))
        if kind == "return" or (kind == "cancel" and draw(st.booleans())):
            quantity = -quantity
        invoice = None
        if with_invoices and draw(st.integers(0, 4)) > 0:  # one line in five has no invoice id
            invoice = f"{'C' if kind == 'cancel' else ''}{customer}-{day}-{draw(st.integers(0, 1))}"
        product = draw(st.sampled_from(PRODUCTS))
        price = draw(st.sampled_from(PRICES))
        rows.append(
            {
                "customer_id": customer,
                "timestamp": ts,
                "quantity": quantity,
                "unit_price": price,
                "amount": -abs(quantity * price) if kind == "cancel" else quantity * price,  # the cleaning rule
                "is_return": quantity < 0 or kind == "cancel",
                "invoice_id": invoice,
                "product": product,
                "category": draw(st.sampled_from(["toys", "garden", "kitchen"])),
                "country": draw(st.sampled_from(["United Kingdom", "France", "EIRE"])),
            }
        )
    log = pd.DataFrame(rows)
    log["customer_id"] = log["customer_id"].astype("str")
    log["timestamp"] = log["timestamp"].astype("datetime64[us]")
    if category_rule == "stock_code_family":
        log["category"] = factory_family(log["product"])
    if not with_invoices:
        log = log.drop(columns=["invoice_id"])
    times = st.tuples(st.integers(0, 90), st.sampled_from([0, 9, 12]))
    ats = sorted({BASE + pd.Timedelta(days=d, hours=h) for d, h in draw(st.lists(times, min_size=1, max_size=3))})
    return log, {"ats": ats, "category_rule": category_rule, "cancel_prefix": draw(st.sampled_from([None, "C"]))}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transaction_logs())
def test_device_state_equals_factory_features_at_random_times(case: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    log, options = case
    program = program_for_log(log, category_rule=options["category_rule"], cancel_prefix=options["cancel_prefix"])
    events = list(log_events(log, program))
    with (
        tempfile.TemporaryDirectory() as tmp,
        CustomerState(Path(tmp) / "s.sqlite", program, clock=lambda: 2e9) as state,
    ):
        done = 0
        for at in options["ats"]:
            while done < len(events) and pd.Timestamp(events[done][0]["timestamp"]) < at:
                event, customer_id = events[done]
                state.observe(event, _ref(customer_id))
                done += 1
            records = {}
            for customer_id in log["customer_id"].unique():
                try:
                    records[customer_id] = state.materialise(_ref(customer_id), at.to_pydatetime())
                except NoRecordError:
                    continue
            try:
                expected = build_customer_features(log, at)
            except FactoryInputError:  # no purchase before `at`: no customer has a record
                assert records == {}
                continue
            compare_records(expected, records)
            assert "R" not in records


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transaction_logs(days=3), st.randoms(use_true_random=False))
def test_events_arriving_late_within_lateness_give_the_same_records(
    case: tuple[pd.DataFrame, dict[str, Any]], rng: Any
) -> None:
    log, options = case
    program = program_for_log(log, category_rule=options["category_rule"], cancel_prefix=options["cancel_prefix"])
    events = [(event, _ref(customer)) for event, customer in log_events(log, program)]
    # Each event is delayed by up to half the lateness: it arrives after later events, never too
    # late. Four days of log make a customer's late basket land after their next day's one.
    delay = program.lateness_s / 2
    arrival = sorted(events, key=lambda e: pd.Timestamp(e[0]["timestamp"]).timestamp() + rng.uniform(0, delay))
    at = log["timestamp"].max() + pd.Timedelta(days=1)
    records: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, order in (("in_order", events), ("late", arrival)):
            with CustomerState(Path(tmp) / f"{name}.sqlite", program, clock=lambda: 2e9) as state:
                for event, r in order:
                    state.observe(event, r)
                records.append({})
                for r in sorted({r for _, r in events}):
                    try:
                        records[-1][r] = state.materialise(r, at.to_pydatetime())
                    except NoRecordError:
                        continue
    assert records[0].keys() == records[1].keys()
    if records[0]:
        compare_records(pd.DataFrame.from_dict(records[0], orient="index"), records[1])


def test_a_cancellation_with_a_positive_quantity_subtracts_in_the_factory_and_on_the_till(tmp_path: Path) -> None:
    """A 'C' invoice is a return whatever the sign its till printed: both sides subtract |qty × price|."""
    log_file = tmp_path / "cancel.csv"
    log_file.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,HEART,6,2011-03-01 10:00:00,2.55,17850,United Kingdom\n"
        "536366,71053,LANTERN,4,2011-03-02 10:00:00,3.39,17850,United Kingdom\n"
        "C536367,85123A,HEART,2,2011-03-03 10:00:00,2.55,17850,United Kingdom\n"  # positive quantity
        "C536368,71053,LANTERN,-1,2011-03-03 11:00:00,3.39,17850,United Kingdom\n",
        encoding="utf-8",
    )
    log = load_transactions(log_file, LogColumns.online_retail())[0]
    assert log.loc[log["invoice_id"] == "C536367", "amount"].tolist() == [-5.1]
    row = build_customer_features(log, "2011-03-10").loc["17850"]
    assert row["monetary"] == pytest.approx(6 * 2.55 + 4 * 3.39 - 2 * 2.55 - 3.39)
    assert row["return_rate"] == pytest.approx((2 * 2.55 + 3.39) / (6 * 2.55 + 4 * 3.39))
    assert check_skew(log, "2011-03-10", columns=LogColumns.online_retail())["customers"] == 1
    program = program_for_log(log, LogColumns.online_retail())
    with CustomerState(tmp_path / "s.sqlite", program, clock=lambda: 2e9) as till:
        for event, customer in log_events(log, program):
            till.observe(event, _ref(customer))
        assert till.materialise(_ref("17850"), "2011-03-10")["monetary"] == pytest.approx(row["monetary"])


def test_the_default_job_passes_the_gate_and_hands_the_program_to_the_manifest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from factory.features import build_value_tier_table

    table, info = build_value_tier_table(cutoff="2011-02-01")
    assert info["feature_program"] == FeatureProgram.online_retail().to_json()
    gate = info["skew_gate"]
    assert (gate["customers"], gate["cutoff"]) == (len(table), "2011-02-01T00:00:00")
    assert gate["max_relative_difference"] <= gate["rel_tol"] == 1e-6
    # A till rule that drifted fails the job itself, naming the customer, feature and values.
    monkeypatch.setattr(device, "stock_code_family", _three_digit_family)
    with pytest.raises(SkewError, match=r"skew gate: customer '\d+' feature '(category_breadth|top_category_share)'"):
        build_value_tier_table(cutoff="2011-02-01")
