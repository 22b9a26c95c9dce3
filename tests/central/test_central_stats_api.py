"""Drift (PSI against the manifest reference), outcomes -> accuracy/recall, segment mix,
/metrics and the OpenAPI document, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest
from central_helpers import ADMIN, MODEL_VERSION, bearer, make_result


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def _post_results(api, device, results) -> None:  # type: ignore[no-untyped-def]
    response = api.client.post(
        "/v1/results:batch",
        json={"device_id": device["id"], "results": results},
        headers=bearer(device["token"]),
    )
    assert response.status_code == 200, response.text


def _psi(expected, counts) -> float:  # type: ignore[no-untyped-def]
    total = sum(counts)
    return sum(
        (max(c / total, 1e-4) - max(e, 1e-4)) * math.log(max(c / total, 1e-4) / max(e, 1e-4))
        for e, c in zip(expected, counts, strict=True)
    )


def test_drift_is_psi_per_input_and_flags_above_threshold(api, device) -> None:
    body = {
        "device_id": device["id"],
        "model_version": MODEL_VERSION,
        # reference: recency 0.3/0.4/0.2 + missing 0.1; country UK .8, France .15, other .03, missing .02
        "histograms": {"recency_days": [30, 40, 20, 10], "country": [10, 60, 20, 10]},
    }
    response = api.client.post("/v1/drift", json=body, headers=bearer(device["token"]))
    assert response.status_code == 201
    expected_country = _psi([0.8, 0.15, 0.03, 0.02], [10, 60, 20, 10])
    assert response.json() == {
        "device_id": device["id"],
        "model_version": MODEL_VERSION,
        "rows": 100,
        "psi": {"recency_days": pytest.approx(0.0, abs=1e-12), "country": pytest.approx(expected_country)},
        "flagged": ["country"],
        "threshold": 0.2,
    }
    assert expected_country > 0.2
    overview = api.client.get("/v1/stats/drift", headers=ADMIN).json()
    assert [(d["device_id"], d["flagged"]) for d in overview] == [(device["id"], ["country"])]


@pytest.mark.parametrize(
    ("histograms", "status", "detail"),
    [
        ({"recency_days": [1, 2, 3]}, 422, "histograms.recency_days: 3 counts, the reference has 4 bins"),
        ({"age": [1, 2]}, 422, f"histograms.age: {MODEL_VERSION} has no reference for this input"),
        ({"recency_days": [1, -2, 3, 4]}, 422,
         "histograms.recency_days[1]: Input should be greater than or equal to 0 (got -2)"),
        ({}, 422, "histograms: Dictionary should have at least 1 item after validation, not 0"),
    ],
    ids=["bin-count", "unknown-input", "negative-count", "empty"],
)  # fmt: skip
def test_bad_drift_reports(api, device, histograms, status, detail) -> None:
    body = {"device_id": device["id"], "model_version": MODEL_VERSION, "histograms": histograms}
    response = api.client.post("/v1/drift", json=body, headers=bearer(device["token"]))
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert api.client.get("/v1/stats/drift", headers=ADMIN).json() == []


def test_drift_for_unknown_model_or_other_device(api, device) -> None:
    other = api.add_device("s2")
    body = {"device_id": device["id"], "model_version": "x/y", "histograms": {"a": [1]}}
    response = api.client.post("/v1/drift", json=body, headers=bearer(device["token"]))
    assert (response.status_code, response.json()) == (
        404, {"detail": "model_version 'x/y' is not registered at central"}
    )  # fmt: skip
    forbidden = (403, {"detail": f"this token belongs to device {other['id']!r}, not {device['id']!r}"})
    response = api.client.post("/v1/drift", json=body, headers=bearer(other["token"]))
    assert (response.status_code, response.json()) == forbidden
    # Ownership is checked before the body: another device's token learns nothing about it.
    response = api.client.post("/v1/drift", json={**body, "histograms": {}}, headers=bearer(other["token"]))
    assert (response.status_code, response.json()) == forbidden
    assert api.client.get("/v1/stats/drift", headers=ADMIN).json() == []


def test_outcomes_give_accuracy_and_recall(api, device) -> None:
    _post_results(
        api,
        device,
        [
            make_result(1, customer_ref="a", segment="high"),
            make_result(2, customer_ref="b", segment="high"),
            make_result(3, customer_ref="c", segment="low"),
            make_result(4, customer_ref="d", segment="mid"),
            make_result(5, customer_ref="a", segment="mid"),  # the newest prediction for "a"
            make_result(6, customer_ref=None, segment="mid"),
        ],
    )
    outcomes = [
        {"customer_ref": "a", "actual_segment": "mid"},
        {"customer_ref": "b", "actual_segment": "mid"},
        {"customer_ref": "c", "actual_segment": "low"},
        {"customer_ref": "zzz", "actual_segment": "low"},  # never predicted: not evaluated
    ]
    response = api.client.post("/v1/outcomes", json={"outcomes": outcomes}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "stored": 4,
        "accuracy": {
            "evaluated": 3,
            "accuracy": pytest.approx(2 / 3),
            "recall": {"low": 1.0, "mid": 0.5},
            "support": {"low": 1, "mid": 2},
            "suppressed": [],
        },
    }
    # A corrected outcome replaces the old one.
    fixed = api.client.post(
        "/v1/outcomes",
        json={"outcomes": [{"customer_ref": "b", "actual_segment": "high"}]},
        headers=ADMIN,
    )
    assert fixed.json()["accuracy"]["accuracy"] == 1.0
    assert api.client.get("/v1/stats/accuracy", headers=ADMIN).json()["evaluated"] == 3


def test_segment_mix_per_store_per_day(api, device) -> None:
    other = api.add_device("s2")
    _post_results(
        api,
        device,
        [
            make_result(1, segment="high", classified_at="2026-11-25T23:30:00-01:00"),  # 26th UTC
            make_result(2, segment="high", classified_at="2026-11-26T08:00:00Z"),
            make_result(3, segment="low", classified_at="2026-11-27T08:00:00Z"),
        ],
    )
    _post_results(api, other, [make_result(1, segment="mid")])
    rows = api.client.get("/v1/stats/segments", headers=ADMIN).json()["rows"]
    assert rows == [
        {"store": "s1", "day": "2026-11-26", "segment": "high", "count": 2},
        {"store": "s1", "day": "2026-11-27", "segment": "low", "count": 1},
        {"store": "s2", "day": "2026-11-26", "segment": "mid", "count": 1},
    ]
    only_s2 = api.client.get("/v1/stats/segments?store=s2", headers=ADMIN).json()["rows"]
    assert [r["store"] for r in only_s2] == ["s2"]


def test_named_stores_read_as_name_and_id_on_the_dashboard_and_csv(api, device) -> None:
    from central.services.stores import rename_store

    other = api.add_device("s2")
    _post_results(api, device, [make_result(1, segment="high")])
    _post_results(api, other, [make_result(1, segment="mid")])
    with api.db.sessionmaker() as session:
        rename_store(session, "s1", "Leeds Briggate")
    page = api.client.get("/dashboard", headers=ADMIN).text
    assert "<td>Leeds Briggate (s1)</td>" in page and "<td>s2</td>" in page  # unnamed: the id alone
    assert '<option value="s1">Leeds Briggate (s1)</option>' in page  # the filter still sends the id
    csv = api.client.get("/dashboard/mix.csv?bucket=day", headers=ADMIN).text.splitlines()
    assert csv[1:] == ["2026-11-26,Leeds Briggate (s1),high,1,1.0000", "2026-11-26,s2,mid,1,1.0000"]
    only = api.client.get("/dashboard/mix.csv?store=s1", headers=ADMIN).text.splitlines()
    assert only[1:] == ["2026-11-26,Leeds Briggate (s1),high,1,1.0000"]


def test_metrics_count_ingest(api, device) -> None:
    _post_results(api, device, [make_result(1), make_result(2)])
    _post_results(api, device, [make_result(2), make_result(3)])
    text = api.client.get("/metrics").text
    assert "edgeseg_results_stored_total 3.0" in text
    assert "edgeseg_results_duplicate_total 1.0" in text
    assert 'edgeseg_result_batches_total{outcome="ok"} 2.0' in text
    assert 'edgeseg_http_requests_total{method="POST",route="/v1/results:batch",status="200"} 2.0' in text


def test_openapi_documents_the_batch_body(api) -> None:
    spec = api.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/results:batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ResultsBatchCreate"}
    batch = spec["components"]["schemas"]["ResultsBatchCreate"]
    assert batch["required"] == ["device_id", "results"]
    assert "ResultCreate" in spec["components"]["schemas"]
    assert {"/v1/models/current", "/v1/drift", "/v1/outcomes", "/dashboard"} <= set(spec["paths"])
