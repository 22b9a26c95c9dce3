"""Customer feature state at the till (issue 11): what a store relies on when it feeds events.

The equality with the factory's features is the skew gate's job (tests/factory/test_skew_gate.py);
these tests pin the device-side contract: exact records for a known history, idempotent and
atomic events, refused events that name the field and change nothing, lateness, and dormancy
that turns on with time alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.customer_state import (
    CustomerState,
    EventError,
    FeatureProgram,
    NoRecordError,
    ObserveResult,
    stock_code_family,
)

NOW = datetime(2011, 12, 31).timestamp()  # the tests' wall clock (UTC program): after every event


def ref(customer_id: str) -> str:
    """A stand-in for Runtime.customer_ref (32 hex digits of a keyed hash)."""
    return hashlib.sha256(b"test-secret:" + customer_id.encode()).hexdigest()[:32]


def basket(
    customer: str = "17850",
    ts: str = "2011-03-01T10:00:00",
    invoice: str | None = "536365",
    lines: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "customer_id": customer,
        "timestamp": ts,
        "country": "United Kingdom",
        "lines": lines
        if lines is not None
        else [
            {"product": "85123A", "quantity": 6.0, "unit_price": 2.55},
            {"product": "71053", "quantity": 6.0, "unit_price": 3.39},
            {"product": "84406B", "quantity": 8.0, "unit_price": 2.75},
            {"product": "84029G", "quantity": 6.0, "unit_price": 3.39},
            {"product": "POST", "quantity": 1.0, "unit_price": 18.0},
        ],
    }
    if invoice is not None:
        event["invoice_id"] = invoice
    event.update(extra)
    return event


@pytest.fixture
def state(tmp_path: Path):
    with CustomerState(tmp_path / "state.sqlite", FeatureProgram.online_retail(), clock=lambda: NOW) as s:
        yield s


def snapshot(state: CustomerState, at: str = "2011-06-01") -> dict[str, Any]:
    """Everything observable: each customer's record (or why none), the count and the watermark."""
    records: dict[str, Any] = {}
    for r in state.refs():
        try:
            records[r] = state.materialise(r, at)
        except NoRecordError as exc:
            records[r] = str(exc)
    return {"records": records, "customers": len(state), "watermark": state.watermark}


def test_a_basket_then_a_return_give_the_factory_record(state: CustomerState) -> None:
    state.observe(basket(), ref("17850"))
    state.observe(
        basket(
            ts="2011-03-05T09:00:00",
            invoice="C536379",
            lines=[{"product": "85123A", "quantity": -2.0, "unit_price": 2.55}],
        ),
        ref("17850"),
    )
    state.observe(
        basket(
            ts="2011-03-08T12:00:00",
            invoice="536400",
            lines=[{"product": "22423", "quantity": 2.0, "unit_price": 12.75}],
        ),
        ref("17850"),
    )
    record = state.materialise(ref("17850"), "2011-03-10T00:00:00")
    assert (record.pop("country"), record.pop("is_dormant")) == ("United Kingdom", "no")
    gross = 6 * 2.55 + 6 * 3.39 + 8 * 2.75 + 6 * 3.39 + 18.0 + 2 * 12.75
    assert record == pytest.approx(
        {
            "recency_days": 1.5,  # last purchase 03-08 12:00
            "frequency": 2.0,  # the cancellation invoice is not a basket
            "monetary": gross - 2 * 2.55,
            "tenure_days": 8 + 14 / 24,
            "avg_basket_value": gross / 2,
            "avg_basket_items": 29 / 2,
            "return_rate": 2 * 2.55 / gross,
            "product_breadth": 6.0,
            "category_breadth": 5.0,  # 85, 71, 84, non-merchandise, 22
            "top_category_share": (8 * 2.75 + 6 * 3.39) / gross,
            "inter_purchase_days": 7.0,  # days 03-01 and 03-08
        },
        rel=1e-12,
    )
    assert [*record, "country", "is_dormant"] == list(FeatureProgram.online_retail().features)


def test_replayed_event_changes_nothing(state: CustomerState) -> None:
    assert state.observe(basket(), ref("17850")) == ObserveResult(applied=5, duplicates=0, skipped=0)
    before = snapshot(state)
    assert state.observe(basket(), ref("17850")) == ObserveResult(applied=0, duplicates=5, skipped=0)
    assert snapshot(state) == before


def test_half_applied_basket_applies_only_the_missing_lines(state: CustomerState, tmp_path: Path) -> None:
    full = basket()
    state.observe({**full, "lines": full["lines"][:2]}, ref("17850"))
    assert state.observe(full, ref("17850")) == ObserveResult(applied=3, duplicates=2, skipped=0)
    with CustomerState(tmp_path / "once.sqlite", FeatureProgram.online_retail(), clock=lambda: NOW) as once:
        once.observe(full, ref("17850"))
        assert snapshot(state) == snapshot(once)


def test_an_invoice_split_over_two_events_is_one_basket(state: CustomerState) -> None:
    lines = basket()["lines"]
    state.observe(basket(lines=[{**line, "line": i} for i, line in enumerate(lines[:3])]), ref("1"))
    later = [{**line, "line": i + 3} for i, line in enumerate(lines[3:])]
    state.observe(basket(ts="2011-03-01T10:01:00", lines=later), ref("1"))
    record = state.materialise(ref("1"), "2011-03-02")
    assert record["frequency"] == 1.0
    assert record["avg_basket_items"] == 27.0


def one_line(**fields: Any) -> dict[str, Any]:
    """A change to an event: its only line is a valid line with ``fields`` changed."""
    return {"lines": [{"product": "1", "quantity": 1.0, "unit_price": 1.0, **fields}]}


BAD_EVENTS = [
    ("unknown field", {"coupon": "X"}, "coupon", "is not an event field"),
    ("unknown line field", one_line(sku=3), "lines[0].sku", "is not a line field"),
    ("negative price", one_line(unit_price=-2.5), "lines[0].unit_price", "must be >= 0"),
    ("text quantity", one_line(quantity="3"), "lines[0].quantity", "must be a number"),
    ("NaN quantity", one_line(quantity=float("nan")), "lines[0].quantity", "finite"),
    ("boolean price", one_line(unit_price=True), "lines[0].unit_price", "must be a number"),
    ("future timestamp", {"timestamp": "2012-01-01T00:00:00"}, "timestamp", "is in the future"),
    ("bad timestamp", {"timestamp": "yesterday"}, "timestamp", "ISO 8601"),
    ("long customer id", {"customer_id": "x" * 65}, "customer_id", "at most 64 characters"),
    ("no key", {"invoice_id": None}, "invoice_id", "needs an invoice_id or an event_id"),
    ("no lines", {"lines": []}, "lines", "non-empty list"),
    ("repeated line number", {"lines": one_line(line=1)["lines"] * 2}, "lines[1].line", "repeats"),
    ("category under the stock-code rule", one_line(category="toys"), "lines[0].category", "category rule"),
]


@pytest.mark.parametrize(("change", "field", "rule"), [b[1:] for b in BAD_EVENTS], ids=[b[0] for b in BAD_EVENTS])
def test_bad_event_is_refused_naming_the_field_and_changes_nothing(
    state: CustomerState, change: dict[str, Any], field: str, rule: str
) -> None:
    state.observe(basket(), ref("17850"))
    before = snapshot(state)
    event = {k: v for k, v in {**basket(ts="2011-03-02T10:00:00", invoice="536999"), **change}.items() if v is not None}
    with pytest.raises(EventError, match=rule) as caught:
        state.observe(event, ref("17850"))
    assert caught.value.field == field
    assert f"event field {field!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert snapshot(state) == before


def test_a_refused_event_in_a_batch_applies_none_of_the_batch(state: CustomerState) -> None:
    good = basket()
    bad = basket(
        ts="2011-03-02T10:00:00", invoice="536999", lines=[{"product": "1", "quantity": 1.0, "unit_price": -1.0}]
    )
    with pytest.raises(EventError) as caught:
        state.observe_many([(good, ref("a")), (bad, ref("b"))])
    assert caught.value.field == "events[1].lines[0].unit_price"
    assert len(state) == 0 and state.watermark is None


def test_a_refused_batch_leaves_customers_in_use_unchanged(state: CustomerState) -> None:
    state.observe(basket(), ref("a"))
    before = snapshot(state)  # customer "a" is now held in memory as well as on disk
    more = basket(ts="2011-03-02T10:00:00", invoice="536400")
    bad = basket(ts="2011-03-02T11:00:00", invoice="536401", lines=one_line(unit_price=-1.0)["lines"])
    with pytest.raises(EventError, match="events.1..lines.0..unit_price"):
        state.observe_many([(more, ref("a")), (bad, ref("a"))])
    assert snapshot(state) == before


def test_a_second_writer_is_seen_by_the_first(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    program = FeatureProgram.online_retail()
    with CustomerState(path, program, clock=lambda: NOW) as serve, CustomerState(path, clock=lambda: NOW) as ingest:
        serve.observe(basket(), ref("a"))
        assert serve.materialise(ref("a"), "2011-03-10")["frequency"] == 1.0
        ingest.observe(basket(ts="2011-03-02T10:00:00", invoice="536400"), ref("a"))
        assert serve.materialise(ref("a"), "2011-03-10")["frequency"] == 2.0
        assert serve.watermark == datetime(2011, 3, 2, 10)
        # and the first writer continues from the second one's state, not from its memory
        serve.observe(basket(ts="2011-03-03T10:00:00", invoice="536500"), ref("a"))
        assert ingest.materialise(ref("a"), "2011-03-10")["frequency"] == 3.0


def test_concurrent_tills_on_one_state_give_the_sequential_state(tmp_path: Path) -> None:
    program = FeatureProgram.online_retail()
    streams = [
        [(basket(customer=str(i % 3), ts=f"2011-03-01T1{t}:{i:02d}:00", invoice=f"{t}-{i}"), ref(str(i % 3)))
         for i in range(40)]
        for t in range(4)
    ]  # fmt: skip
    with CustomerState(tmp_path / "threads.sqlite", program, clock=lambda: NOW) as shared:
        errors: list[BaseException] = []

        def till(stream: list[tuple[dict[str, Any], str]]) -> None:
            try:
                for event, r in stream:
                    shared.observe(event, r)
                    shared.materialise(r, "2011-03-02")
            except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
                errors.append(exc)

        threads = [threading.Thread(target=till, args=(stream,)) for stream in streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        concurrent = snapshot(shared, "2011-03-02")
    with CustomerState(tmp_path / "sequential.sqlite", program, clock=lambda: NOW) as alone:
        for stream in streams:
            alone.observe_many(stream)
        sequential = snapshot(alone, "2011-03-02")
    assert concurrent["records"].keys() == sequential["records"].keys()
    for r, record in sequential["records"].items():  # sums in another order: equal to rounding
        got = concurrent["records"][r]
        assert {k: v for k, v in got.items() if isinstance(v, str)} == {
            k: v for k, v in record.items() if isinstance(v, str)
        }
        numbers = {k: math.nan if v is None else v for k, v in record.items() if not isinstance(v, str)}
        assert {k: math.nan if got[k] is None else got[k] for k in numbers} == pytest.approx(
            numbers, rel=1e-12, nan_ok=True
        )


def test_ref_must_be_a_pseudonym_not_a_raw_id(state: CustomerState) -> None:
    with pytest.raises(EventError) as caught:
        state.observe(basket(), "17850")
    assert caught.value.field == "ref"
    assert len(state) == 0


def test_ref_can_be_made_from_the_validated_customer_id(state: CustomerState) -> None:
    calls: list[str] = []

    def pseudonymise(customer_id: str) -> str:  # as Runtime.customer_ref
        calls.append(customer_id)
        return ref(customer_id)

    state.observe(basket(customer=" 17850 "), pseudonymise)
    assert calls == ["17850"]  # stripped, like the factory's ids
    assert state.materialise(ref("17850"), "2011-03-02")["frequency"] == 1.0
    with pytest.raises(EventError, match="at most 64 characters"):
        state.observe(basket(customer="9" * 65), pseudonymise)
    assert calls == ["17850"]  # a refused id is never hashed


def test_raw_customer_ids_are_never_stored(state: CustomerState) -> None:
    state.observe(basket(customer="loyalty-card-4417"), ref("loyalty-card-4417"))
    state.close()
    assert b"loyalty-card-4417" not in b"".join(p.read_bytes() for p in state.path.parent.glob("state.sqlite*"))


def test_late_event_within_lateness_gives_the_in_order_record(tmp_path: Path) -> None:
    program = FeatureProgram.online_retail(lateness_s=3 * 3600)
    events = [
        basket(ts="2011-03-01T10:00:00", invoice="1"),
        basket(ts="2011-03-01T23:30:00", invoice="2", lines=[{"product": "22423", "quantity": 1.0, "unit_price": 9.0}]),
        basket(ts="2011-03-02T01:00:00", invoice="3", lines=[{"product": "22960", "quantity": 2.0, "unit_price": 4.0}]),
    ]
    records = []
    for name, order in (("in_order", [0, 1, 2]), ("late", [0, 2, 1])):
        with CustomerState(tmp_path / f"{name}.sqlite", program, clock=lambda: NOW) as s:
            for i in order:
                s.observe(events[i], ref("1"))
            records.append(s.materialise(ref("1"), "2011-03-03"))
    assert records[0] == records[1]
    assert records[0]["frequency"] == 3.0 and records[0]["inter_purchase_days"] == 1.0


def test_event_later_than_lateness_is_refused(tmp_path: Path) -> None:
    with CustomerState(
        tmp_path / "s.sqlite", FeatureProgram.online_retail(lateness_s=3600), clock=lambda: NOW
    ) as state:
        state.observe(basket(ts="2011-03-01T12:00:00", invoice="2"), ref("1"))
        before = snapshot(state)
        with pytest.raises(EventError, match="more than 3600 s older than the newest event") as caught:
            state.observe(basket(ts="2011-03-01T10:59:59", invoice="1"), ref("2"))
        assert caught.value.field == "timestamp"
        assert snapshot(state) == before
        # A replay of an applied event is still a no-op, not an error.
        assert state.observe(basket(ts="2011-03-01T12:00:00", invoice="2"), ref("1")).duplicates == 5


def test_customer_turns_dormant_with_time_alone(state: CustomerState) -> None:
    state.observe(basket(ts="2011-03-01T10:00:00"), ref("1"))
    day_29 = state.materialise(ref("1"), "2011-03-31T09:59:59")
    day_30 = state.materialise(ref("1"), "2011-03-31T10:00:01")
    assert (day_29["is_dormant"], day_30["is_dormant"]) == ("no", "yes")
    assert day_30["recency_days"] == pytest.approx(30 + 1 / 86400)
    assert day_30["tenure_days"] == day_30["recency_days"]
    assert len(state) == 1  # nothing was written to turn it dormant


def test_a_return_keeps_a_customer_active_but_is_no_purchase(state: CustomerState) -> None:
    only_return = basket(invoice="C1", lines=[{"product": "22423", "quantity": -1.0, "unit_price": 12.75}])
    state.observe(only_return, ref("r"))
    with pytest.raises(NoRecordError, match="seen only through returns"):
        state.materialise(ref("r"), "2011-04-01")
    with pytest.raises(NoRecordError, match="no state on this device"):
        state.materialise(ref("never-seen"), "2011-04-01")
    state.observe(basket(ts="2011-03-01T09:00:00", invoice="2"), ref("r2"))
    state.observe({**only_return, "timestamp": "2011-03-15T10:00:00", "customer_id": "r2"}, ref("r2"))
    record = state.materialise(ref("r2"), "2011-04-10")
    assert record["is_dormant"] == "no"  # the return on 03-15 counts as activity
    assert record["recency_days"] == pytest.approx(39 + 15 / 24)  # ... but not as a purchase


def test_materialise_before_the_newest_line_is_refused(state: CustomerState) -> None:
    state.observe(basket(ts="2011-03-01T10:00:00"), ref("1"))
    with pytest.raises(EventError, match="precedes this customer's newest line") as caught:
        state.materialise(ref("1"), "2011-03-01T09:00:00")
    assert caught.value.field == "at"


def test_now_is_never_before_an_event_the_till_stamped_slightly_ahead(state: CustomerState) -> None:
    ahead = datetime.fromtimestamp(NOW + 120, UTC).replace(tzinfo=None)  # within future_tolerance_s
    state.observe(basket(ts=ahead.isoformat()), ref("1"))
    record = state.materialise(ref("1"))  # at = now, which precedes the event by two minutes
    assert record["recency_days"] == 0.0 and record["tenure_days"] == 0.0


def test_cancelled_flag_and_zero_price_lines_follow_the_factory_cleaning(state: CustomerState) -> None:
    state.observe(basket(ts="2011-03-01T10:00:00", invoice="1"), ref("1"))
    flagged = basket(ts="2011-03-02T10:00:00", invoice="2", cancelled=True,
                     lines=[{"product": "85123A", "quantity": -2.0, "unit_price": 2.55},
                            {"product": "FREE", "quantity": 1.0, "unit_price": 0.0}])  # fmt: skip
    assert state.observe(flagged, ref("1")) == ObserveResult(applied=1, duplicates=0, skipped=1)
    record = state.materialise(ref("1"), "2011-03-03")
    assert record["frequency"] == 1.0 and record["product_breadth"] == 5.0
    assert record["return_rate"] == pytest.approx(2 * 2.55 / (6 * 2.55 + 6 * 3.39 + 8 * 2.75 + 6 * 3.39 + 18.0))


def test_without_invoice_ids_a_purchase_day_is_a_basket(tmp_path: Path) -> None:
    with CustomerState(tmp_path / "cd.sqlite", FeatureProgram.cdnow(), clock=lambda: NOW) as state:
        for i, ts in enumerate(["1997-01-01", "1997-01-01T18:00", "1997-01-11"]):
            event = {"customer_id": "00001", "timestamp": ts, "event_id": f"row-{i}",
                     "lines": [{"quantity": 1.0, "unit_price": 11.77}]}  # fmt: skip
            state.observe(event, ref("00001"))
        record = state.materialise(ref("00001"), "1997-02-01")
    assert list(record) == list(FeatureProgram.cdnow().features)
    assert record["frequency"] == 2.0 and record["inter_purchase_days"] == 10.0
    assert record["avg_basket_value"] == pytest.approx(3 * 11.77 / 2)


def test_state_survives_reopening_and_refuses_another_program(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with CustomerState(path, FeatureProgram.online_retail(), clock=lambda: NOW) as state:
        state.observe(basket(), ref("1"))
        before = snapshot(state)
    with CustomerState(path, clock=lambda: NOW) as state:  # the file remembers its program
        assert snapshot(state) == before
    with pytest.raises(ValueError, match="was built with feature program"):
        CustomerState(path, FeatureProgram.online_retail(dormant_days=60))


def test_feature_program_round_trips_through_the_manifest_section() -> None:
    program = FeatureProgram.cdnow(dormant_days=45.0, lateness_s=600.0)
    section = json.loads(json.dumps(program.to_json()))
    assert FeatureProgram.from_json(section) == program
    with pytest.raises(ValueError, match="unknown field 'window'"):
        FeatureProgram.from_json({**section, "window": 7})
    with pytest.raises(ValueError, match="version"):
        FeatureProgram.from_json({**section, "version": 2})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dormant_days": 0}, "'dormant_days' parameter of FeatureProgram must be > 0"),
        ({"lateness_s": float("inf")}, "'lateness_s' parameter of FeatureProgram must be a finite number"),
        ({"invoices": "yes"}, "'invoices' parameter of FeatureProgram must be true or false"),
        ({"category_rule": "family"}, "'category_rule' parameter of FeatureProgram must be one of"),
        ({"timezone": "Mars/Olympus"}, "'timezone' parameter of FeatureProgram must be an IANA zone"),
        ({"cancel_prefix": ""}, "'cancel_prefix' parameter of FeatureProgram must be null or a non-empty string"),
        ({"max_lines": 0}, "'max_lines' parameter of FeatureProgram must be an integer >= 1"),
    ],
)
def test_a_bad_feature_program_section_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureProgram.from_json({**FeatureProgram().to_json(), **change})


def test_stock_code_family_is_the_factory_rule() -> None:
    pytest.importorskip("pandas")
    import pandas as pd

    from factory.features import stock_code_family as factory_rule

    codes = ["85123A", "22423", "POST", "C2", "gift_0001_20", "84029E", "123456", "12345ab", " 22423", "DOT"]
    assert [stock_code_family(c) for c in codes] == factory_rule(pd.Series(codes)).tolist()


def test_module_imports_nothing_heavier_than_numpy() -> None:
    # onnxruntime comes with the edge_runtime package itself; the state needs none of these.
    heavy = "{'pandas', 'pyarrow', 'sklearn'}"
    code = f"import sys, edge_runtime.customer_state; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_CHILD = textwrap.dedent(
    """
    import json, sys
    from edge_runtime.customer_state import CustomerState, FeatureProgram
    path, events = sys.argv[1], json.loads(sys.stdin.read())
    program = FeatureProgram.online_retail(lateness_s=1e9)  # so that a whole-stream replay is all duplicates
    with CustomerState(path, program, clock=lambda: 1.4e9) as state:
        while True:  # replay the same stream for ever: every pass after the first is all duplicates
            for event, ref in events:
                state.observe(event, ref)
                print(event["invoice_id"], flush=True)  # noqa: E501
    """
)


def test_sigkill_mid_stream_then_replay_gives_the_clean_state(tmp_path: Path) -> None:
    start = datetime(2011, 3, 1, 10)
    events = [
        (basket(customer=str(i % 7), ts=(start + timedelta(minutes=i)).isoformat(), invoice=str(i)), ref(str(i % 7)))
        for i in range(3000)
    ]
    program = FeatureProgram.online_retail(lateness_s=1e9)
    for delay in (0.05, 0.3):
        path = tmp_path / f"killed-{delay}.sqlite"
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(events))
        child.stdin.close()
        child.stdout.readline()  # it has committed at least one event
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        print(f"killed after {1 + len(child.stdout.read().splitlines())} committed events")
        with CustomerState(path, clock=lambda: 1.4e9) as state:
            for event, r in events:  # the till replays its stream after the crash
                state.observe(event, r)
            killed = snapshot(state, "2011-04-01")
        with CustomerState(tmp_path / f"clean-{delay}.sqlite", program, clock=lambda: 1.4e9) as clean:
            clean.observe_many(events)
            assert killed == snapshot(clean, "2011-04-01")
