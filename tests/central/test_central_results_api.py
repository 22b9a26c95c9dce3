"""POST /v1/results:batch on SQLite and PostgreSQL: exactly-once storage and every refusal."""

from __future__ import annotations

import gzip
import json

import pytest
from central_helpers import ADMIN, MODEL_VERSION, bearer, make_result


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def post(api, device, results, **kwargs):  # type: ignore[no-untyped-def]
    body = {"device_id": device["id"], "results": results}
    return api.client.post("/v1/results:batch", json=body, headers=bearer(device["token"]), **kwargs)


def test_batch_is_stored_once_and_acked_contiguously(api, device) -> None:
    response = post(api, device, [make_result(s) for s in (1, 2, 3)])
    assert response.status_code == 200
    assert response.json() == {"acked_through": 3, "stored": 3, "duplicates": 0, "epoch": ""}

    replay = post(api, device, [make_result(s) for s in (1, 2, 3)])
    assert replay.json() == {"acked_through": 3, "stored": 0, "duplicates": 3, "epoch": ""}

    ahead = post(api, device, [make_result(s) for s in (5, 6, 8)])
    assert ahead.json() == {"acked_through": 3, "stored": 3, "duplicates": 0, "epoch": ""}

    gap_filled = post(api, device, [make_result(4), make_result(5)])
    assert gap_filled.json() == {"acked_through": 6, "stored": 1, "duplicates": 1, "epoch": ""}
    assert api.count_results(device["id"]) == 7

    listed = api.client.get("/v1/devices", headers=ADMIN).json()
    assert [(d["id"], d["acked_through"], d["results"]) for d in listed] == [(device["id"], 6, 7)]


def test_gzip_body_and_backlog_are_accepted(api, device) -> None:
    body = {"device_id": device["id"], "results": [make_result(1)], "backlog": 42}
    response = api.client.post(
        "/v1/results:batch",
        content=gzip.compress(json.dumps(body).encode()),
        headers={
            **bearer(device["token"]),
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"acked_through": 1, "stored": 1, "duplicates": 0, "epoch": ""}
    listed = api.client.get("/v1/devices", headers=ADMIN).json()
    assert listed[0]["backlog"] == 42
    assert listed[0]["model_version"] == MODEL_VERSION


def test_an_empty_batch_answers_the_watermark(api, device) -> None:
    post(api, device, [make_result(1), make_result(2)])
    assert post(api, device, []).json() == {"acked_through": 2, "stored": 0, "duplicates": 0, "epoch": ""}


def _bad_result_cases():  # type: ignore[no-untyped-def]
    ok = make_result(1)
    return [
        pytest.param(
            [make_result(-1)],
            "results[0].seq: Input should be greater than 0 (got -1)",
            id="negative-seq",
        ),
        pytest.param(
            [make_result(0)],
            "results[0].seq: Input should be greater than 0 (got 0)",
            id="zero-seq",
        ),
        pytest.param(
            [make_result(1.5)],
            "results[0].seq: Input should be a valid integer (got 1.5)",
            id="float-seq",
        ),
        pytest.param(
            [make_result("2")],
            "results[0].seq: Input should be a valid integer (got '2')",
            id="string-seq",
        ),
        pytest.param(
            [ok, make_result(2, probabilities={"high": 0.5, "mid": 0.2, "low": 0.1})],
            "results[1].probabilities: sum to 0.8, not 1 (tolerance 0.001)",
            id="probabilities-sum",
        ),
        pytest.param(
            [make_result(1, probabilities={"high": 0.7, "mid": 0.3})],
            "results[0].probabilities: keys ['high', 'mid'] are not the classes of "
            f"{MODEL_VERSION} ['high', 'low', 'mid']",
            id="probabilities-keys",
        ),
        pytest.param(
            [ok, make_result(2, model_version="retail-tier/19990101T000000Z")],
            "results[1].model_version: 'retail-tier/19990101T000000Z' is not registered at central",
            id="unknown-model-version",
        ),
        pytest.param(
            [make_result(1, segment="gold")],
            f"results[0].segment: 'gold' is not a class of {MODEL_VERSION} (high, mid, low)",
            id="unknown-segment",
        ),
        pytest.param(
            [ok, make_result(1)],
            "results[1].seq: 1 appears twice in this batch (first at results[0])",
            id="seq-twice",
        ),
        pytest.param(
            [make_result(1, classified_at="2026-11-26T12:00:00")],
            "results[0].classified_at: Input should have timezone info (got '2026-11-26T12:00:00')",
            id="naive-time",
        ),
        pytest.param(
            [{k: v for k, v in ok.items() if k != "customer_ref"}],
            "results[0].customer_ref: Field required",
            id="missing-field",
        ),
    ]


@pytest.mark.parametrize(("results", "detail"), _bad_result_cases())
def test_invalid_result_rejects_the_whole_batch(api, device, results, detail) -> None:
    response = post(api, device, results)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    assert api.count_results() == 0


def test_auth_refusals_store_nothing(api, device) -> None:
    other = api.add_device("s2")
    body = {"device_id": device["id"], "results": [make_result(1)]}
    cases = [
        ({}, 401, "missing bearer token: send 'Authorization: Bearer <token>'"),
        (bearer("not-a-token"), 401, "invalid device token"),
        (
            bearer(other["token"]),
            403,
            f"this token belongs to device {other['id']!r}, not {device['id']!r}",
        ),
        (ADMIN, 401, "invalid device token"),
    ]
    for headers, status, detail in cases:
        response = api.client.post("/v1/results:batch", json=body, headers=headers)
        assert (response.status_code, response.json()) == (status, {"detail": detail})
    revoked = api.client.post(f"/v1/devices/{device['id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = api.client.post("/v1/results:batch", json=body, headers=bearer(device["token"]))
    assert (response.status_code, response.json()) == (
        401,
        {"detail": f"device {device['id']} is revoked"},
    )
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.count_results() == 0


def test_body_refusals_store_nothing(api, device) -> None:
    headers = bearer(device["token"])
    url = "/v1/results:batch"
    malformed = api.client.post(url, content=b'{"device_id": ', headers=headers)
    assert malformed.status_code == 400
    assert malformed.json() == {"detail": "request body is not valid JSON: Expecting value: line 1 column 15 (char 14)"}
    nan = api.client.post(url, content=b'{"device_id": NaN}', headers=headers)
    assert nan.json() == {"detail": "request body is not valid JSON: NaN is not valid JSON"}

    oversize = post(api, device, [make_result(s) for s in range(1, 102)])
    assert oversize.status_code == 413
    assert oversize.json() == {"detail": "batch holds 101 results; the limit is 100 (EDGESEG_MAX_BATCH_RESULTS)"}
    too_big = api.client.post(url, content=b" " * (256 * 1024 + 1), headers=headers)
    assert too_big.status_code == 413
    assert too_big.json() == {"detail": "request body exceeds 262144 bytes (EDGESEG_MAX_BODY_BYTES)"}
    bomb = gzip.compress(b" " * (1024 * 1024))
    inflated = api.client.post(url, content=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert (inflated.status_code, inflated.json()) == (
        413,
        {"detail": "request body exceeds 262144 bytes (EDGESEG_MAX_BODY_BYTES)"},
    )
    not_gzip = api.client.post(url, content=b"{}", headers={**headers, "Content-Encoding": "gzip"})
    assert not_gzip.status_code == 400
    assert not_gzip.json()["detail"].startswith("request body is not valid gzip: ")
    brotli = api.client.post(url, content=b"{}", headers={**headers, "Content-Encoding": "br"})
    assert (brotli.status_code, brotli.json()) == (
        415,
        {"detail": "Content-Encoding 'br' is not supported; send identity or gzip"},
    )
    not_object = api.client.post(url, json=[1, 2], headers=headers)
    assert (not_object.status_code, not_object.json()) == (
        422,
        {"detail": "body: Input should be a valid dictionary or instance of ResultsBatchCreate"},
    )
    assert api.count_results() == 0


def test_database_outage_is_a_503_with_retry_after(api, device, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    import central.api.routes.results as route

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(route, "ingest", down)
    response = post(api, device, [make_result(1)])
    assert (response.status_code, response.json()) == (
        503, {"detail": "the database is unavailable; retry later"}
    )  # fmt: skip
    assert response.headers["Retry-After"] == "2"
