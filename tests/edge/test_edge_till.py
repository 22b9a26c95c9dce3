"""The till (issue 11): ``Runtime.observe`` / ``classify_customer`` on a real default-job model.

A till sends events (a customer, a basket of lines, a return), the device keeps each
customer's feature state beside the outbox and classifies from it; the segment goes to the
outbox like any other classification.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.artifact import read_manifest
from edge_runtime.customer_state import EventError, FeatureProgram, NoFeatureProgramError, NoRecordError
from edge_runtime.runtime import Runtime, customer_state_path_for

SECRET = "till-test-secret-0123456789"


def basket(customer: str = "17850", ts: str = "2011-09-01T10:00:00", invoice: str = "T1", **extra: Any) -> dict:
    event: dict[str, Any] = {
        "customer_id": customer,
        "timestamp": ts,
        "invoice_id": invoice,
        "country": "United Kingdom",
        "lines": [
            {"product": "85123A", "quantity": 6.0, "unit_price": 2.55},
            {"product": "71053", "quantity": 6.0, "unit_price": 3.39},
            {"product": "84406B", "quantity": 8.0, "unit_price": 2.75},
            {"product": "84029G", "quantity": 6.0, "unit_price": 3.39},
            {"product": "POST", "quantity": 1.0, "unit_price": 18.0},
        ],
    }
    event.update(extra)
    return event


@pytest.fixture
def runtime(till_artifact: Path, signing_public_key: Path, tmp_path: Path):
    with Runtime(
        till_artifact, outbox_path=tmp_path / "outbox.db", device_id="till-1", secret=SECRET,
        public_key=signing_public_key,
    ) as rt:  # fmt: skip
        yield rt


def test_the_default_jobs_manifest_names_its_feature_program_and_gate(till_artifact: Path) -> None:
    manifest = read_manifest(till_artifact)
    assert manifest.feature_program == FeatureProgram.online_retail().to_json()
    assert manifest.skew_gate is not None and manifest.skew_gate["max_relative_difference"] <= 1e-6
    assert "feature_program" not in (manifest.data or {}).get("report", {})  # one place for it


def test_observe_then_classify_customer_stores_the_segment(runtime: Runtime, tmp_path: Path) -> None:
    observed = runtime.observe(basket())
    assert observed.to_dict() == {
        "customer_ref": runtime.customer_ref("17850"), "applied": 5, "duplicates": 0, "skipped": 0,
    }  # fmt: skip
    assert runtime.observe(basket()).duplicates == 5  # a replayed basket is not counted twice
    out = runtime.classify_customer("17850", at="2011-09-10")
    assert out.record["frequency"] == 1.0 and out.record["recency_days"] == pytest.approx(8 + 14 / 24)
    assert out.result.segment in runtime.classifier.classes and out.result.seq == 1
    assert runtime.classify({**out.record, "customer_id": "17850"}) == out.result._replace(seq=2)
    assert runtime.outbox.status()["backlog"] == 2
    assert runtime.customer_state_path == customer_state_path_for(tmp_path / "outbox.db")
    assert b"17850" not in runtime.customer_state_path.read_bytes()  # only the pseudonym is stored


def test_dormancy_follows_the_classification_time(runtime: Runtime) -> None:
    runtime.observe(basket())
    assert runtime.classify_customer(17850, at="2011-09-10").record["is_dormant"] == "no"
    assert runtime.classify_customer(17850, at="2011-10-10").record["is_dormant"] == "yes"


def test_bad_events_are_refused_by_field_and_change_nothing(runtime: Runtime) -> None:
    runtime.observe(basket())
    before = runtime.classify_customer("17850", at="2011-09-10").record
    bad = basket(ts="2011-09-02T10:00:00", invoice="T2")
    bad["lines"][1]["unit_price"] = -1.0
    with pytest.raises(EventError) as caught:
        runtime.observe(bad)
    assert caught.value.field == "lines[1].unit_price"
    with pytest.raises(EventError, match="'coupon': is not an event field"):
        runtime.observe(basket(invoice="T3", coupon="X"))
    assert runtime.classify_customer("17850", at="2011-09-10").record == before
    with pytest.raises(NoRecordError):
        runtime.classify_customer("unknown-customer")


def test_a_model_without_a_feature_program_refuses_till_events(
    small_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    with Runtime(small_artifact, outbox_path=tmp_path / "o.db", device_id="d", secret=SECRET,
                 public_key=signing_public_key) as rt:  # fmt: skip
        with pytest.raises(NoFeatureProgramError, match="has no feature_program in its manifest"):
            rt.observe(basket())
    assert not customer_state_path_for(tmp_path / "o.db").exists()


def test_state_outlives_the_process(till_artifact: Path, signing_public_key: Path, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"outbox_path": tmp_path / "o.db", "device_id": "d", "secret": SECRET,
                              "public_key": signing_public_key}  # fmt: skip
    with Runtime(till_artifact, **kwargs) as rt:
        rt.observe(basket())
        first = rt.classify_customer("17850", at="2011-09-10").record
    with Runtime(till_artifact, **kwargs) as rt:
        assert rt.classify_customer("17850", at="2011-09-10").record == first
        assert json.loads(json.dumps(first)) == first


# ---------------------------------------------------------------------------- CLI and serve
@pytest.fixture
def till_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, till_artifact: Path, signing_public_key: Path) -> Path:
    for name in ("EDGESEG_CONFIG", "EDGESEG_HOST", "EDGESEG_PORT", "EDGESEG_DURABILITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGESEG_ARTIFACT", str(till_artifact))
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY", str(signing_public_key))
    monkeypatch.setenv("EDGESEG_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("EDGESEG_DEVICE_ID", "till-cli")
    monkeypatch.setenv("EDGESEG_SECRET", SECRET)
    return tmp_path


def test_ingest_applies_a_file_names_bad_lines_and_classifies(
    till_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_runtime.cli import main

    bad = basket(ts="2011-09-03T10:00:00", invoice="T9")
    bad["lines"][2]["quantity"] = "six"
    events = [basket(), basket("12347", invoice="T2"), basket(), bad, basket(ts="2011-09-05T09:00:00", invoice="T3")]
    path = till_env / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n{not json\n", encoding="utf-8")
    assert main(["ingest", str(path), "--classify", "--at", "2011-09-10"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "line 4: event field 'lines[2].quantity': must be a number (got 'six')",
        "line 6: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ]
    *segments, counts = (json.loads(line) for line in out.splitlines())
    assert counts == {"events": 6, "applied": 3, "duplicate": 1, "refused": 2, "lines_applied": 15,
                      "lines_duplicate": 5, "classified": 2, "no_record": 0}  # fmt: skip
    shown = [(s["customer_id"], s["seq"], s["record"]["frequency"]) for s in segments]
    assert shown == [("17850", 1, 2.0), ("12347", 2, 1.0)]
    # Ingesting the same file again applies nothing twice.
    assert main(["ingest", str(path)]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["lines_applied"] == 0


def test_ingest_refuses_a_model_without_a_feature_program(
    till_env: Path, small_artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_runtime.cli import main

    monkeypatch.setenv("EDGESEG_ARTIFACT", str(small_artifact))
    (till_env / "e.jsonl").write_text(json.dumps(basket()) + "\n", encoding="utf-8")
    assert main(["ingest", str(till_env / "e.jsonl")]) == 2
    assert "has no feature_program in its manifest" in capsys.readouterr().err


def _post(port: int, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read()))
    conn.close()
    return answer


def test_post_events_answers_the_segment_after_the_event(runtime: Runtime) -> None:
    import threading

    from edge_runtime._http import make_server

    server = make_server(runtime, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        status, answer = _post(port, "/events?at=2011-09-10", basket())
        assert status == 200 and (answer["applied"], answer["seq"], answer["record"]["frequency"]) == (5, 1, 1.0)
        assert answer["segment"] in runtime.classifier.classes
        status, answer = _post(port, "/events", basket(unit="x"))
        assert (status, answer["field"]) == (400, "unit")
        ret = basket("R1", invoice="C1", lines=[{"product": "85123A", "quantity": -1.0, "unit_price": 2.55}])
        status, answer = _post(port, "/events", ret)
        assert (status, answer["applied"], answer["segment"]) == (200, 1, None)
        status, answer = _post(port, "/events?at=2011-01-01", basket(invoice="T5"))
        assert (status, answer["field"], answer["applied"]) == (422, "at", 5)
        status, answer = _post(port, "/events?when=now", basket())
        assert status == 400 and "'at'" in answer["detail"]
    finally:
        server.shutdown()
        server.server_close()
