"""Issue 10 at central: exactly-once is content-checked and per outbox epoch (item 2), and
crafted results are refused with the field named instead of a 500 (item 9). SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from central_helpers import ADMIN, ADMIN_TOKEN, MODEL_VERSION, CentralApi, bearer, make_result, write_artifact

E1 = "0123456789abcdef0123456789abcdef"
E2 = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def device(api, test_artifact):  # type: ignore[no-untyped-def]
    api.publish(test_artifact)
    return api.add_device("s1")


def post(api, device, results, epoch=None):  # type: ignore[no-untyped-def]
    body = {"device_id": device["id"], "results": results}
    if epoch is not None:
        body["epoch"] = epoch
    return api.client.post("/v1/results:batch", json=body, headers=bearer(device["token"]))


def ack(acked_through: int, stored: int, duplicates: int, epoch: str) -> dict:  # type: ignore[type-arg]
    return {"acked_through": acked_through, "stored": stored, "duplicates": duplicates, "epoch": epoch}


# ----------------------------------------------------------------------------- item 2
def test_a_replayed_seq_with_other_content_is_a_conflict_not_a_duplicate(api, device) -> None:
    first = post(api, device, [make_result(s) for s in (1, 2, 3)], epoch=E1)
    assert (first.status_code, first.json()) == (200, ack(3, 3, 0, E1))

    # The probe of issue 10: a recreated outbox restarts at seq 1 with new results. Today they
    # were "duplicates" and the device marked them synced: 3 of 3 lost.
    changed = post(api, device, [make_result(4), make_result(2, segment="low", customer_ref="new")], epoch=E1)
    assert (changed.status_code, changed.json()) == (
        409,
        {"detail": f"result seq 2 of epoch {E1} conflicts with the stored result (content differs)"},
    )
    assert api.count_results() == 3  # the whole batch is refused: seq 4 was not stored either

    same = post(api, device, [make_result(2), make_result(3)], epoch=E1)
    assert same.json() == ack(3, 0, 2, E1)


def test_the_same_content_in_another_json_spelling_is_a_duplicate(api, device) -> None:
    result = make_result(1, probabilities={"high": 1, "mid": 0, "low": 0}, classified_at="2026-11-26T13:00:00+01:00")
    assert post(api, device, [result], epoch=E1).json() == ack(1, 1, 0, E1)
    respelled = make_result(
        1, probabilities={"low": 0.0, "mid": 0.0, "high": 1.0}, classified_at="2026-11-26T12:00:00.000Z"
    )
    assert post(api, device, [respelled], epoch=E1).json() == ack(1, 0, 1, E1)


def test_each_outbox_epoch_has_its_own_seqs_and_watermark(api, device) -> None:
    assert post(api, device, [make_result(s) for s in (1, 2, 3)], epoch=E1).json() == ack(3, 3, 0, E1)
    # A new outbox (deleted, reinstalled, quarantined) starts a new epoch at seq 1 again.
    fresh = [make_result(s, customer_ref=f"n-{s}", segment="mid") for s in (1, 2)]
    assert post(api, device, fresh, epoch=E2).json() == ack(2, 2, 0, E2)
    assert post(api, device, [], epoch=E1).json() == ack(3, 0, 0, E1)
    assert api.count_results(device["id"]) == 5

    listed = api.client.get("/v1/devices", headers=ADMIN).json()
    assert [(d["epoch"], d["acked_through"], d["results"]) for d in listed] == [(E2, 2, 5)]
    # A late retry of the old epoch does not move the listing back.
    post(api, device, [make_result(3)], epoch=E1)
    listed = api.client.get("/v1/devices", headers=ADMIN).json()
    assert [(d["epoch"], d["acked_through"]) for d in listed] == [(E2, 2)]


def test_a_device_without_epochs_keeps_the_legacy_epoch(api, device) -> None:
    assert post(api, device, [make_result(1)]).json() == ack(1, 1, 0, "")
    assert post(api, device, [make_result(1)], epoch="").json() == ack(1, 0, 1, "")
    conflict = post(api, device, [make_result(1, customer_ref="someone-else")])
    assert (conflict.status_code, conflict.json()) == (
        409,
        {"detail": "result seq 1 of epoch '' conflicts with the stored result (content differs)"},
    )


@pytest.mark.parametrize(
    ("epoch", "detail"),
    [
        ("ABCDEF0123456789ABCDEF0123456789", "epoch: String should match pattern '^([0-9a-f]{32})?$' (got 'ABCDE…"),
        ("0123", "epoch: String should match pattern '^([0-9a-f]{32})?$' (got '0123')"),
        (7, "epoch: Input should be a valid string (got 7)"),
    ],
)
def test_a_malformed_epoch_is_refused(api, device, epoch, detail) -> None:
    response = post(api, device, [make_result(1)], epoch=epoch)
    assert response.status_code == 422
    got = response.json()["detail"]
    assert got == detail or (detail.endswith("…") and got.startswith(detail[:-1]))
    assert api.count_results() == 0


def test_rows_stored_before_hashes_existed_are_still_content_checked(database_url, settings, test_artifact) -> None:
    """Migrations 0002-0003 keep a legacy device's watermark and check replays against its rows
    (stored at schema 0001, before epochs and hashes existed)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from central.core.db import make_engine
    from central.core.migrate import upgrade
    from central.main import create_app

    engine = make_engine(database_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (id, store, token_hash, created_at, acked_through, results_count) "
                "VALUES ('d-old', 's1', :h, :now, 2, 2)"
            ),
            {"h": hashlib.sha256(b"old-token").hexdigest(), "now": datetime(2026, 11, 1)},
        )
        for seq in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO results (device_id, seq, customer_ref, segment, probabilities, "
                    "model_version, classified_at, received_at) VALUES ('d-old', :seq, :ref, 'high', "
                    ":p, :mv, :at, :at)"
                ),
                {
                    "seq": seq,
                    "ref": f"c-{seq}",
                    "p": '{"high": 0.7, "mid": 0.2, "low": 0.1}',
                    "mv": MODEL_VERSION,
                    "at": datetime(2026, 11, 26, 12),
                },
            )
    engine.dispose()
    app = create_app(settings)
    with TestClient(app) as client:
        api = CentralApi(client, app.state.db)
        api.publish(test_artifact)
        old = {"id": "d-old", "token": "old-token"}
        assert post(api, old, []).json() == ack(2, 0, 0, "")
        assert post(api, old, [make_result(1), make_result(2)]).json() == ack(2, 0, 2, "")
        conflict = post(api, old, [make_result(2, segment="low")])
        assert (conflict.status_code, conflict.json()["detail"]) == (
            409,
            "result seq 2 of epoch '' conflicts with the stored result (content differs)",
        )
        assert post(api, old, [make_result(3)]).json() == ack(3, 1, 0, "")


# ----------------------------------------------------------------------------- item 9
def _crafted_cases():  # type: ignore[no-untyped-def]
    future = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    out_of_range = [
        pytest.param(
            make_result(1, classified_at=moment),
            "results[0].classified_at: Value error, is outside the range of representable UTC times "
            f"(years 1 to 9999) (got '{moment}')",
            id=f"year-{moment[:4]}-in-utc",
        )
        for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
    ]
    return [
        *out_of_range,
        pytest.param(
            make_result(1, classified_at=future.isoformat()),
            f"results[0].classified_at: {future.isoformat()} is more than 86400 s ahead of central's clock "
            "(EDGESEG_MAX_FUTURE_SKEW_S)",
            id="far-future",
        ),
        pytest.param(
            make_result(1, segment="high", probabilities={"high": 0.1, "mid": 0.7, "low": 0.2}),
            "results[0].segment: 'high' is not the most probable class ('mid': 0.7 > 0.1)",
            id="segment-not-argmax",
        ),
        *(
            pytest.param(
                make_result(1, probabilities={"high": value, "mid": 0, "low": 0}),
                f"results[0].probabilities.high: Value error, must be a JSON number (got {value!r})",
                id=f"probability-as-{type(value).__name__}",
            )
            for value in ("1.0", True)
        ),
        *(
            pytest.param(
                make_result(1, **{field: value}),
                f"results[0].{field}: Value error, must not contain a NUL character (got {value!r})",
                id=f"nul-in-{field}",
            )
            for field, value in (("customer_ref", "c\x001"), ("model_version", "retail-tier/2026\x00"))
        ),
        pytest.param(
            make_result(1, model_version="retail-tier/.."),
            "results[0].model_version: Value error, model version '..' must match [A-Za-z0-9._-]+ and not be "
            "'.' or '..' (got 'retail-tier/..')",
            id="dot-dot-version",
        ),
    ]


@pytest.mark.parametrize(("result", "detail"), _crafted_cases())
def test_crafted_results_are_422_naming_the_field(api, device, result, detail) -> None:
    response = post(api, device, [result], epoch=E1)
    assert (response.status_code, response.json()) == (422, {"detail": detail})
    assert api.count_results() == 0


def test_a_nul_in_a_device_id_is_refused(api, device) -> None:
    body = {"device_id": device["id"] + "\x00", "results": []}
    response = api.client.post("/v1/results:batch", json=body, headers=bearer(device["token"]))
    # Ownership is checked first: the claim is not this token's device.
    assert response.status_code == 403


def test_results_of_a_model_never_rolled_out_to_the_store_are_refused(
    api, test_artifact, tmp_path, central_signing_key
) -> None:
    api.publish(test_artifact)
    elsewhere = write_artifact(tmp_path, central_signing_key[0], version="20261201T000000Z")
    api.add_device("s2")
    api.publish(elsewhere, rollout_to="s2")
    device = api.add_device("s1")
    other_version = "retail-tier/20261201T000000Z"
    response = post(api, device, [make_result(1), make_result(2, model_version=other_version)], epoch=E1)
    assert (response.status_code, response.json()) == (
        422,
        {"detail": f"results[1].model_version: {other_version} was never rolled out to store 's1'"},
    )
    drift = api.client.post(
        "/v1/drift",
        json={"device_id": device["id"], "model_version": other_version, "histograms": {"country": [1, 2, 3, 4]}},
        headers=bearer(device["token"]),
    )
    assert (drift.status_code, drift.json()) == (
        422,
        {"detail": f"model_version: {other_version} was never rolled out to store 's1'"},
    )
    assert api.count_results() == 0


def test_the_future_skew_is_configurable(database_url, central_signing_key, test_artifact) -> None:
    from fastapi.testclient import TestClient

    from central.core.config import Settings
    from central.main import create_app

    settings = Settings(
        env="test",
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        public_key_path=central_signing_key[1],
        max_future_skew_s=60,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        api = CentralApi(client, app.state.db)
        api.publish(test_artifact)
        device = api.add_device("s1")
        soon = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()
        later = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0).isoformat()
        assert post(api, device, [make_result(1, classified_at=soon)], epoch=E1).status_code == 200
        refused = post(api, device, [make_result(2, classified_at=later)], epoch=E1)
        assert (refused.status_code, refused.json()) == (
            422,
            {
                "detail": f"results[0].classified_at: {later} is more than 60 s ahead of central's clock "
                "(EDGESEG_MAX_FUTURE_SKEW_S)"
            },
        )
