"""Outcomes without the device's secret (issue 14, item 5): the till reports what a customer turned
out to be, keyed by the ref its results carry; head office gets accuracy and never the secret."""

from __future__ import annotations

import pytest
from central_helpers import ADMIN, MODEL_VERSION, bearer, make_result
from test_central_sync_client import AppTransport, head_office

from edge_runtime.outcomes import OutcomeSpool, send_outcomes
from edge_runtime.runtime import customer_ref_for

SECRET = "a-deployment-secret-of-32-bytes!"


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def test_outcomes_reported_by_the_device_give_accuracy(api, device, tmp_path) -> None:  # type: ignore[no-untyped-def]
    refs = {raw: customer_ref_for(SECRET, raw) for raw in ("17850", "13047", "12583")}
    results = [
        make_result(1, customer_ref=refs["17850"], segment="high"),
        make_result(2, customer_ref=refs["13047"], segment="low"),
        make_result(3, customer_ref=refs["12583"], segment="mid"),
    ]
    answer = api.client.post(
        "/v1/results:batch", json={"device_id": device["id"], "results": results}, headers=bearer(device["token"])
    )
    assert answer.status_code == 200, answer.text
    spool = OutcomeSpool(tmp_path / "outbox.db")  # the till learns two outcomes
    spool.add(refs["17850"], "high")
    spool.add(refs["13047"], "mid")
    office = head_office(AppTransport(api.client), device_id=device["id"], token=device["token"])
    assert send_outcomes(office.request_json, device["id"], spool) == 2
    assert spool.unsent() == 0 and send_outcomes(office.request_json, device["id"], spool) == 0
    accuracy = api.client.get("/v1/stats/accuracy", headers=ADMIN).json()
    assert (accuracy["evaluated"], accuracy["accuracy"]) == (2, 0.5)


def test_a_device_reports_outcomes_only_as_itself(api, device) -> None:  # type: ignore[no-untyped-def]
    other = api.add_device("s1")
    body = {"outcomes": [{"customer_ref": "x", "actual_segment": "high"}]}
    path = f"/v1/devices/{device['id']}/outcomes"
    assert api.client.post(path, json=body, headers=bearer(other["token"])).status_code == 403
    assert api.client.post(path, json=body, headers=bearer(device["token"])).status_code == 201
    assert api.client.post(path, json=body).status_code == 401
    assert MODEL_VERSION  # the published model is the one the results name


def test_runtime_report_outcome_stores_the_ref_and_refuses_a_typo(till_artifact, signing_public_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edge_runtime import Runtime

    with Runtime(
        till_artifact, public_key=signing_public_key, outbox_path=tmp_path / "o.db", device_id="t", secret=SECRET
    ) as runtime:
        ref = runtime.report_outcome("17850", "mid")
        assert ref == customer_ref_for(SECRET, "17850")
        with pytest.raises(ValueError, match="'middle' is not a class of model"):
            runtime.report_outcome("17850", "middle")
    pending = OutcomeSpool(tmp_path / "o.db").pending()
    assert [(r, s) for _, r, s in pending] == [(ref, "mid")]  # the ref, never the raw id
    assert b"17850" not in (tmp_path / "o.db").read_bytes()
