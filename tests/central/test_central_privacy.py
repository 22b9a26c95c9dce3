"""Privacy at head office (issue 15): the daily budget of noised reports, small-cell
suppression in the page and the exports, federated statistics, and erasure end to end across
a device (real Outbox, CustomerState and SyncClient) and central on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from central_helpers import ADMIN, CLASSES, MODEL_VERSION, make_result
from test_central_sync_client import AppTransport, head_office

from edge_runtime.customer_state import CustomerState, FeatureProgram
from edge_runtime.outbox import Outbox
from edge_runtime.privacy import PrivacyBudget, PrivacyLedger, private_report
from edge_runtime.sync import DriftSpool, ErasureTarget, SyncClient

NOW = datetime(2011, 12, 31).timestamp()


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("leeds")


def _report(device_id: str, budget: PrivacyBudget, seed: int, **counts: object) -> dict[str, object]:
    return private_report(
        device_id=device_id,
        model_version=MODEL_VERSION,
        histograms=counts.get("histograms", {"recency_days": [300, 400, 200, 100], "country": [800, 150, 30, 20]}),  # type: ignore[arg-type]
        segments=counts.get("segments", {"high": 500, "mid": 300, "low": 200}),  # type: ignore[arg-type]
        budget=budget,
        rng=np.random.default_rng(seed),
        day="2026-11-30",
    )


def test_reports_beyond_the_daily_budget_are_refused_naming_it(api, device) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {device['token']}"}
    budget = PrivacyBudget(epsilon=2.0, reports_per_day=4)  # central's default limit is ε 2 a day
    first = _report(device["id"], budget, 0)
    answers = [
        api.client.post("/v1/privacy/reports", json=_report(device["id"], budget, i), headers=headers)
        for i in range(1, 5)
    ]
    assert [a.status_code for a in answers] == [201] * 4
    assert answers[-1].json()["budget"]["epsilon_spent"] == pytest.approx(2.0)
    assert answers[0].json()["psi"].keys() == {"recency_days", "country"}

    refused = api.client.post("/v1/privacy/reports", json=first, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        f"privacy budget exhausted: device {device['id']!r} has spent epsilon 2 of its 2 for "
    )
    assert "(UTC, EDGESEG_DP_EPSILON_PER_DAY); this report asks 0.5 more" in refused.json()["detail"]
    # a resend of an accepted report (lost reply) is answered again and spends nothing
    again = api.client.post(
        "/v1/privacy/reports",
        json=_report(device["id"], budget, 1) | {"report_id": answers[0].json()["report_id"]},
        headers=headers,
    )
    assert again.status_code == 201 and again.json()["budget"]["reports"] == 4
    spent = api.client.get(f"/v1/privacy/budgets/{device['id']}", headers=ADMIN).json()
    assert spent["epsilon_spent"] == pytest.approx(2.0) and spent["reports"] == 4
    # each accepted report is a drift report too (PSI of the clamped noisy counts)
    drift = api.client.get("/v1/stats/drift", headers=ADMIN).json()
    assert [d["device_id"] for d in drift] == [device["id"]]


def test_a_report_must_state_its_sensitivity_and_noise(api, device) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {device['token']}"}
    body = _report(device["id"], PrivacyBudget(), 0) | {"sensitivity": 1}
    answer = api.client.post("/v1/privacy/reports", json=body, headers=headers)
    assert answer.status_code == 422
    assert "sensitivity 1 must be the number of count vectors (3)" in answer.text


def test_the_device_holds_reports_beyond_its_budget_until_the_next_day(api, device, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, device_id=device["id"])
    spool = DriftSpool.for_outbox(path)
    snapshot = {
        "model_version": MODEL_VERSION,
        "rows": 10,
        "inputs": {"recency_days": {"counts": [3, 4, 2, 1]}, "country": {"counts": [8, 1, 1, 0]}},
    }
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    client = SyncClient(office, privacy=PrivacyBudget(epsilon=1.0, reports_per_day=2), rng=np.random.default_rng(3))
    for _ in range(3):
        spool.save(snapshot)
        report = client.sync_once(outbox, drift=spool)
    assert report.private_held == 1 and report.private_reports == 0  # third snapshot waits
    assert len(spool.pending()) == 1  # its counts are still spooled, not noised or lost
    assert PrivacyLedger(path).outgoing() == []
    spent = api.client.get(f"/v1/privacy/budgets/{device['id']}", headers=ADMIN).json()
    assert spent["reports"] == 2 and spent["epsilon_spent"] == pytest.approx(1.0)
    outbox.close()


def _results(api, device: dict[str, str], cells: dict[tuple[str, str], int], start: int = 1) -> None:  # type: ignore[no-untyped-def]
    """``cells[(day, segment)]`` results of distinct customers for ``device`` (at 10:00 UTC
    unless ``day`` is a whole ISO time)."""
    results, seq = [], start
    for (day, segment), n in cells.items():
        for _ in range(n):
            results.append(
                make_result(
                    seq,
                    segment=segment,
                    customer_ref=f"{device['id'][:6]}-{seq}",
                    classified_at=day if "T" in day else f"{day}T10:00:00Z",
                )
            )
            seq += 1
    body = {"device_id": device["id"], "results": results}
    answer = api.client.post("/v1/results:batch", json=body, headers={"Authorization": f"Bearer {device['token']}"})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def k10_api(settings, test_artifact):  # type: ignore[no-untyped-def]
    from central_helpers import CentralApi
    from fastapi.testclient import TestClient

    from central.main import create_app

    app = create_app(settings.model_copy(update={"small_cell_k": 10}))  # the default k
    with TestClient(app) as client:
        api = CentralApi(client, app.state.db)
        api.publish(test_artifact)
        yield api


def test_small_cells_are_suppressed_in_exports_and_the_page(k10_api) -> None:  # type: ignore[no-untyped-def]
    api = k10_api
    leeds, york = api.add_device("leeds"), api.add_device("york")
    _results(api, leeds, {("2026-11-24", "high"): 12, ("2026-11-24", "low"): 9, ("2026-11-25", "mid"): 10})
    _results(api, york, {("2026-11-24", "high"): 3})

    mix = api.client.get("/v1/stats/segments", headers=ADMIN).json()
    assert mix["rows"] == [
        {"store": "leeds", "day": "2026-11-24", "segment": "high", "count": 12},
        {"store": "leeds", "day": "2026-11-25", "segment": "mid", "count": 10},
    ]
    assert mix["suppressed"] == 2 and mix["min_customers"] == 10

    outcomes = [{"customer_ref": f"{leeds['id'][:6]}-{i}", "actual_segment": "high"} for i in range(1, 13)]
    outcomes += [{"customer_ref": f"{leeds['id'][:6]}-{i}", "actual_segment": "low"} for i in range(13, 16)]
    accuracy = api.client.post("/v1/outcomes", json={"outcomes": outcomes}, headers=ADMIN).json()["accuracy"]
    assert accuracy["support"] == {"high": 12} and accuracy["suppressed"] == ["low"]
    assert accuracy["recall"] == {"high": 1.0} and accuracy["evaluated"] == 12

    page = api.client.get("/dashboard", headers=ADMIN).text
    assert "2026-11-24 high: 12" in page and "2026-11-25 mid: 10" in page
    assert "low: 9" not in page and "york" in page  # the device is listed, its 3-customer cell is not
    assert 'york</td><td class="num">' not in page  # no store-mix row for york
    assert "2 cells (store × day × segment) of fewer than 10 customers are not shown." in page
    assert "Segment mix over time (22 results)" in page
    assert ">low</td>" not in page  # no recall row for the 3 'low' outcomes


def test_hour_day_and_week_buckets_suppress_each_cell_as_shown(k10_api) -> None:  # type: ignore[no-untyped-def]
    """An analyst can look at hours, days or ISO weeks; every cell is grouped by the database
    and checked against k=10 at that bucket, so an hour of 4 customers is hidden while its
    day (16) shows, and a week adds up small days without exposing them."""
    api = k10_api
    leeds = api.add_device("leeds")
    _results(
        api,
        leeds,
        {
            ("2026-11-22T23:59:00Z", "high"): 10,  # a Sunday: the week of Monday 16 Nov
            ("2026-11-24T10:05:00Z", "high"): 12,
            ("2026-11-24T11:05:00Z", "high"): 4,
            ("2026-11-26T10:05:00Z", "high"): 6,
            ("2026-11-29T23:30:00Z", "high"): 1,  # Sunday: still the week of Monday 23 Nov
        },
    )

    def mix(bucket: str) -> tuple[list[tuple[str, int]], int]:
        body = api.client.get(f"/v1/stats/segments?bucket={bucket}", headers=ADMIN).json()
        return [(r["day"], r["count"]) for r in body["rows"]], body["suppressed"]

    assert mix("hour") == ([("2026-11-22 23:00", 10), ("2026-11-24 10:00", 12)], 3)
    assert mix("day") == ([("2026-11-22", 10), ("2026-11-24", 16)], 2)
    assert mix("week") == ([("2026-11-16", 10), ("2026-11-23", 23)], 0)
    assert api.client.get("/v1/stats/segments?bucket=minute", headers=ADMIN).status_code == 422
    typo = api.client.get("/v1/stats/segments?buckt=hour", headers=ADMIN)
    assert (typo.status_code, typo.json()["detail"]) == (
        422, "unknown query parameter 'buckt'; this route takes ['days', 'store', 'bucket']",
    )  # fmt: skip

    one_day = "since=2026-11-24&until=2026-11-24"
    page = api.client.get(f"/dashboard?{one_day}&bucket=hour", headers=ADMIN).text
    assert "2026-11-24 10:00 high: 12 (100%)" in page and "11:00" not in page
    assert "1 cells (store × hour × segment) of fewer than 10 customers are not shown." in page
    csv = api.client.get(f"/dashboard/mix.csv?{one_day}&bucket=hour", headers=ADMIN).text
    assert csv.splitlines() == [
        "hour,store,segment,results,share_of_bucket_store",
        "2026-11-24 10:00,leeds,high,12,1.0000",
    ]
    week = api.client.get("/dashboard/mix.csv?since=2026-11-24&bucket=week", headers=ADMIN).text
    assert week.splitlines()[1:] == ["2026-11-23,leeds,high,23,1.0000"]  # the 24th on, by its Monday
    bad = api.client.get("/dashboard?bucket=minute", headers=ADMIN)
    assert bad.status_code == 400 and "bucket must be one of (&#x27;hour&#x27;, &#x27;day&#x27;" in bad.text


def test_federated_statistics_combine_noised_reports_per_store(api, test_artifact) -> None:  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    budget = PrivacyBudget(epsilon=1.0, reports_per_day=4)
    for store, seed in (("leeds", 10), ("york", 20)):
        device = api.add_device(store)
        for i in range(2):
            body = _report(device["id"], budget, seed + i, segments={})
            answer = api.client.post(
                "/v1/privacy/reports", json=body, headers={"Authorization": f"Bearer {device['token']}"}
            )
            assert answer.status_code == 201, answer.text
    stats = api.client.get(f"/v1/privacy/federated-stats?model_version={MODEL_VERSION}", headers=ADMIN).json()
    assert sorted(stats["stores"]) == ["leeds", "york"]
    leeds = stats["stores"]["leeds"]
    assert leeds["reports"] == 2 and leeds["epsilon_spent"] == pytest.approx(0.5)
    std = leeds["noise_std"]["recency_days"]  # two reports of 2 vectors at ε 0.25: sqrt(2) * 8 each
    assert std == pytest.approx(np.sqrt(2 * 2 * 8.0**2))
    assert all(
        abs(a - b) < 6 * std for a, b in zip(leeds["histograms"]["recency_days"], [600, 800, 400, 200], strict=True)
    )
    assert stats["reference"]["recency_days"]["bin_edges"] == [0.0, 10.0, 50.0, 373.0]
    assert sum(stats["fleet"]["proportions"]["country"]) == pytest.approx(1.0)
    assert stats["weights"]["leeds"] + stats["weights"]["york"] == pytest.approx(1.0)
    assert "no raw rows" in stats["source"]


def _observe(state: CustomerState, ref: str, customer: str) -> None:
    state.observe(
        {
            "customer_id": customer,
            "timestamp": "2011-03-01T10:00:00",
            "invoice_id": f"inv-{customer}",
            "country": "United Kingdom",
            "lines": [{"product": "85123A", "quantity": 6.0, "unit_price": 2.55}],
        },
        ref,
    )


def test_erasure_removes_the_customer_everywhere_and_nothing_else(api, device, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from central.models import Outcome, Result

    secret = "per-deployment-secret-0123456789"
    refs = [hashlib.sha256(f"{secret}:{i}".encode()).hexdigest()[:32] for i in range(6)]
    erased, others = refs[0], refs[1:]
    path, state_path = tmp_path / "outbox.db", tmp_path / "outbox.customers.sqlite"
    outbox = Outbox(path, device_id=device["id"])
    for i, ref in enumerate([erased, *others, erased]):  # the erased customer's 1st and 7th results
        segment = CLASSES[i % 3]
        outbox.append(
            segment=segment,
            probabilities={c: 0.5 if c == segment else 0.25 for c in CLASSES},
            model_version=MODEL_VERSION,
            customer_ref=ref,
        )
    with CustomerState(state_path, FeatureProgram.online_retail(), clock=lambda: NOW) as state:
        for i, ref in enumerate(refs):
            _observe(state, ref, str(i))
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    client = SyncClient(office, erasure=ErasureTarget(path, state_path))
    assert client.sync_once(outbox).marked == 7
    outbox.append(
        segment="high",
        probabilities={"high": 0.5, "mid": 0.25, "low": 0.25},
        model_version=MODEL_VERSION,
        customer_ref=erased,
    )  # unsynced
    api.client.post(
        "/v1/outcomes", json={"outcomes": [{"customer_ref": r, "actual_segment": "high"} for r in refs]}, headers=ADMIN
    )

    answer = api.client.post("/v1/customers/erase", json={"customer_ref": erased}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    audit = answer.json()
    assert audit["results_deleted"] == 2 and audit["outcomes_deleted"] == 1
    assert audit["devices"] == 1 and audit["devices_confirmed"] == 0 and audit["completed_at"] is None
    assert erased not in json.dumps(audit)

    report = client.sync_once(outbox)  # applies the erasure, confirms it, then sends the rest
    assert report.erasures_applied == 1 and report.marked == 1

    with api.db.sessionmaker() as session:
        stored = session.execute(select(Result.customer_ref, Result.seq).order_by(Result.seq)).all()
        assert [ref for ref, _ in stored] == [*others, None]  # the unsynced 8th arrived unlinked
        assert sorted(session.scalars(select(Outcome.customer_ref))) == sorted(others)
        from central.privacy_models import Erasure

        (row,) = session.scalars(select(Erasure))
        assert row.customer_ref is None and row.completed_at is not None  # the audit forgot who
    listed = api.client.get("/v1/erasures", headers=ADMIN).json()
    assert [(e["results_deleted"], e["devices_confirmed"]) for e in listed] == [(2, 1)]
    assert [r["customer_ref"] for r in outbox.pending(10)] == []
    outbox.close()
    with CustomerState(state_path, clock=lambda: NOW) as state:
        assert sorted(state.refs()) == sorted(others)
    for file in tmp_path.glob("outbox*"):
        assert erased.encode() not in file.read_bytes() and bytes.fromhex(erased) not in file.read_bytes()
    # the next round has nothing more to erase, and the other customers are all still there
    assert client.sync_once(Outbox(path, device_id=device["id"])).erasures_applied == 0
    assert api.count_results() == 6
    assert api.client.get("/v1/stats/accuracy", headers=ADMIN).json()["evaluated"] == 5


def test_erase_by_raw_id_needs_the_deployment_secret(api, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    refused = api.client.post("/v1/customers/erase", json={"customer_id": "17850"}, headers=ADMIN)
    assert refused.status_code == 422
    assert "central holds no pseudonym secret to compute one from a raw id" in refused.json()["detail"]

    env = {
        "EDGESEG_DATABASE_URL": settings.database_url,
        "EDGESEG_ADMIN_TOKEN": settings.admin_token,
        "EDGESEG_ENV": "test",
        "EDGESEG_PSEUDONYM_SECRET": "per-deployment-secret-0123456789",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", "customer", "erase", "17850"],
        env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("erasure 1 recorded: 0 results and 0 outcomes deleted at central; ")
    assert "17850" not in done.stdout


@pytest.mark.slow
def test_small_cells_are_suppressed_in_the_page_in_chromium(tmp_path, central_signing_key, test_artifact) -> None:  # type: ignore[no-untyped-def]
    """The same rule as the export, in the page a browser renders (default k = 10)."""
    from central_helpers import ADMIN_TOKEN, CentralProcess, free_port, require, upload_body
    from test_central_dashboard import CHROMIUM, CHROMIUM_ARGS

    sync_playwright = require("playwright.sync_api", "playwright==1.65.2").sync_playwright
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (bash scripts/ci_system_deps.sh installs it)")
    env = {
        "EDGESEG_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
        "EDGESEG_ENV": "test",
        "EDGESEG_PUBLIC_KEY_PATH": str(central_signing_key[1]),
    }  # no EDGESEG_SMALL_CELL_K: the default
    central = CentralProcess(env, free_port(), tmp_path / "central.log")
    central.start()
    try:
        central.call("POST", "/v1/models", upload_body(test_artifact))
        for store, cells in (("leeds", {"high": 12, "low": 9}), ("york", {"mid": 3})):
            device = central.call("POST", "/v1/devices", {"store": store})
            results, seq = [], 1
            for segment, n in cells.items():
                for _ in range(n):
                    ref = f"{store}-{seq}"
                    results.append(
                        make_result(seq, segment=segment, customer_ref=ref, classified_at="2026-11-24T10:00:00Z")
                    )
                    seq += 1
            central.call(
                "POST", "/v1/results:batch", {"device_id": device["id"], "results": results}, token=device["token"]
            )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(http_credentials={"username": "head-office", "password": ADMIN_TOKEN})
                page = context.new_page()
                assert page.goto(f"{central.url}/dashboard").status == 200
                assert page.locator("#segment-mix h2").inner_text() == "Segment mix over time (12 results)"
                (bar,) = page.locator("#segment-mix svg rect title").all_text_contents()  # york's 3 and leeds' 9: none
                assert bar.startswith("2026-11-24 high: 12")
                assert page.locator("#segment-mix tbody tr td:first-child").all_inner_texts() == ["leeds"]
                assert page.locator("#suppressed").inner_text() == (
                    "2 cells (store × day × segment) of fewer than 10 customers are not shown."
                )
            finally:
                browser.close()
    finally:
        central.kill()
