"""Issue 10 at central, models and administration: safe names (item 6), store-scoped downloads
(item 8), ordered versions and signed rollback orders (item 5), device events (item 3's report),
and the smaller items of 13 (admin token, rollout to an unknown store, /docs, the factory's key
folder). SQLite and PostgreSQL where storage is involved."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from central_helpers import ADMIN, ADMIN_TOKEN, MODEL_VERSION, bearer, new_signing_key, upload_body, write_artifact
from pydantic import ValidationError

from factory.rollback import rollback_order, signed_bytes

NEWER = "retail-tier/20261201T000000Z"
EPOCH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def two_versions(api, test_artifact, tmp_path, central_signing_key):  # type: ignore[no-untyped-def]
    """Devices in s1 and s2; the older version everywhere, then the newer one everywhere."""
    s1, s2 = api.add_device("s1"), api.add_device("s2")
    api.publish(test_artifact)
    api.publish(write_artifact(tmp_path, central_signing_key[0], version="20261201T000000Z"))
    return s1, s2


def _report_installed(api, device, model_version: str) -> None:  # type: ignore[no-untyped-def]
    body = {"model_version": model_version, "status": "installed"}
    response = api.client.post(f"/v1/devices/{device['id']}/model-report", json=body, headers=bearer(device["token"]))
    assert response.status_code == 201, response.text


# ----------------------------------------------------------------------------- item 6
@pytest.mark.parametrize(
    ("name", "version", "detail"),
    [
        ("x", "..", "manifest version: model version '..' must match [A-Za-z0-9._-]+ and not be '.' or '..'"),
        ("toy-seg", ".", "manifest version: model version '.' must match [A-Za-z0-9._-]+ and not be '.' or '..'"),
        ("a b", "v1", "manifest name: model name 'a b' must match [A-Za-z0-9._-]+ and not be '.' or '..'"),
    ],
)
def test_unsafe_model_names_and_versions_are_never_registered(
    api, tmp_path, central_signing_key, name, version, detail
) -> None:
    artifact = write_artifact(tmp_path / "a", central_signing_key[0], name=name, version=version)
    response = api.client.post("/v1/models", json=upload_body(artifact), headers=ADMIN)
    assert (response.status_code, response.json()) == (422, {"detail": detail})
    assert api.client.get("/v1/models", headers=ADMIN).json() == []


def test_every_route_taking_a_model_version_checks_it(api, test_artifact) -> None:
    api.publish(test_artifact)
    device = api.add_device("s1")
    download = api.client.get("/v1/models/retail-tier/%2E%2E/files/model.onnx", headers=bearer(device["token"]))
    assert (download.status_code, download.json()) == (
        422,
        {"detail": "model version '..' must match [A-Za-z0-9._-]+ and not be '.' or '..'"},
    )
    expected = (
        "model_version: Value error, model name '..' must match [A-Za-z0-9._-]+ and not be '.' or '..' (got '../x')"
    )
    rollout = api.client.post("/v1/rollouts", json={"model_version": "../x"}, headers=ADMIN)
    assert (rollout.status_code, rollout.json()) == (422, {"detail": expected})
    report = api.client.post(
        f"/v1/devices/{device['id']}/model-report",
        json={"model_version": "../x", "status": "refused"},
        headers=bearer(device["token"]),
    )
    assert (report.status_code, report.json()) == (422, {"detail": expected})


# ----------------------------------------------------------------------------- item 8
def test_a_device_downloads_only_what_is_rolled_out_to_its_store(
    api, test_artifact, tmp_path, central_signing_key
) -> None:
    a, b = api.add_device("store-a"), api.add_device("store-b")
    api.publish(test_artifact, rollout_to="store-a")
    for name in ("manifest.json", "model.onnx", "manifest.sig"):
        url = f"/v1/models/retail-tier/20261126T120000Z/files/{name}"
        refused = api.client.get(url, headers=bearer(b["token"]))
        assert (refused.status_code, refused.json()) == (
            404,
            {"detail": f"model {MODEL_VERSION} is not rolled out to store 'store-b'"},
        )
        assert api.client.get(url, headers=bearer(a["token"])).status_code == 200
    current = api.client.get("/v1/models/current", headers=bearer(b["token"]))
    assert (current.status_code, current.json()) == (404, {"detail": "no model is rolled out to store 'store-b'"})
    # A rollout to every store serves every store.
    api.client.post("/v1/rollouts", json={"model_version": MODEL_VERSION, "store": None}, headers=ADMIN)
    assert (
        api.client.get(
            "/v1/models/retail-tier/20261126T120000Z/files/model.onnx", headers=bearer(b["token"])
        ).status_code
        == 200
    )


# ----------------------------------------------------------------------------- item 5
def test_a_rollout_never_moves_a_store_back(api, two_versions) -> None:
    s1, _ = two_versions
    for store in (None, "s1"):
        response = api.client.post("/v1/rollouts", json={"model_version": MODEL_VERSION, "store": store}, headers=ADMIN)
        target = "every store" if store is None else "store 's1'"
        assert (response.status_code, response.json()) == (
            409,
            {
                "detail": f"{MODEL_VERSION} is older than {NEWER}, which {target} runs; "
                "going back needs a signed rollback order (POST /v1/rollbacks)"
            },
        )
    same = api.client.post("/v1/rollouts", json={"model_version": NEWER, "store": "s1"}, headers=ADMIN)
    assert same.status_code == 201
    current = api.client.get("/v1/models/current", headers=bearer(s1["token"])).json()
    assert (current["model_version"], current["rollback"]) == (NEWER, None)


def test_publishing_an_older_version_is_refused_and_registers_nothing(
    api, tmp_path, central_signing_key, test_artifact
) -> None:
    api.add_device("s1")
    api.publish(write_artifact(tmp_path, central_signing_key[0], version="20261201T000000Z"))
    response = api.client.post("/v1/models", json=upload_body(test_artifact), headers=ADMIN)
    assert response.status_code == 409
    assert [m["model_version"] for m in api.client.get("/v1/models", headers=ADMIN).json()] == [NEWER]
    assert api.client.post("/v1/models", json=upload_body(test_artifact, "none"), headers=ADMIN).status_code == 201


def test_a_signed_rollback_order_rolls_a_store_back_and_reaches_its_devices(
    api, two_versions, central_signing_key
) -> None:
    s1, s2 = two_versions
    also_s1 = api.add_device("s1")
    _report_installed(api, s1, NEWER)
    _report_installed(api, also_s1, MODEL_VERSION)
    order = rollback_order(NEWER, MODEL_VERSION, central_signing_key[0])

    response = api.client.post("/v1/rollbacks", json={"order": order, "store": "s1"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert {k: response.json()[k] for k in ("model_version", "store", "rollback_order")} == {
        "model_version": MODEL_VERSION,
        "store": "s1",
        "rollback_order": order,
    }
    current = api.client.get("/v1/models/current", headers=bearer(s1["token"])).json()
    assert (current["model_version"], current["rollback"]) == (MODEL_VERSION, order)
    # A device of the store that does not run from_version gets no order, nor another store.
    other = api.client.get("/v1/models/current", headers=bearer(also_s1["token"])).json()
    assert (other["model_version"], other["rollback"]) == (MODEL_VERSION, None)
    elsewhere = api.client.get("/v1/models/current", headers=bearer(s2["token"])).json()
    assert (elsewhere["model_version"], elsewhere["rollback"]) == (NEWER, None)

    replay = api.client.post("/v1/rollbacks", json={"order": order, "store": "s2"}, headers=ADMIN)
    assert (replay.status_code, replay.json()) == (
        409,
        {"detail": f"rollback order {order['order_id']} was already used"},
    )


def _refusal(api, order, store="s1"):  # type: ignore[no-untyped-def]
    response = api.client.post("/v1/rollbacks", json={"order": order, "store": store}, headers=ADMIN)
    return response.status_code, response.json()


def test_rollback_orders_that_do_not_hold_are_refused(api, two_versions, central_signing_key) -> None:
    key = central_signing_key[0]
    order = rollback_order(NEWER, MODEL_VERSION, key)
    tampered = {**order, "from_version": "retail-tier/20261202T000000Z"}
    assert _refusal(api, tampered) == (
        422,
        {"detail": f"rollback order {order['order_id']}: the signature does not verify with central's trusted key"},
    )
    stranger = rollback_order(NEWER, MODEL_VERSION, new_signing_key())
    assert _refusal(api, stranger)[0] == 422

    forward = {**order, "from_version": MODEL_VERSION, "to_version": NEWER, "signature": ""}
    forward["signature"] = base64.b64encode(key.sign(signed_bytes(forward))).decode()
    assert _refusal(api, forward) == (
        422,
        {
            "detail": f"rollback order {order['order_id']}: to_version {NEWER} is not older than "
            f"from_version {MODEL_VERSION}"
        },
    )
    future = rollback_order(NEWER, MODEL_VERSION, key, issued_at=datetime.now(UTC) + timedelta(days=3))
    status, body = _refusal(api, future)
    assert (status, body["detail"]) == (
        422,
        f"rollback order {future['order_id']}: issued_at {future['issued_at']} is in the future",
    )
    unknown = rollback_order("retail-tier/20261203T000000Z", NEWER, key)
    assert _refusal(api, unknown) == (
        404,
        {
            "detail": f"rollback order {unknown['order_id']}: from_version "
            "'retail-tier/20261203T000000Z' is not registered"
        },
    )
    assert _refusal(api, {**order, "kind": "upgrade"})[0] == 422


def test_an_order_must_start_from_what_the_store_runs(api, two_versions, central_signing_key) -> None:
    key = central_signing_key[0]
    first = rollback_order(NEWER, MODEL_VERSION, key)
    assert api.client.post("/v1/rollbacks", json={"order": first, "store": "s1"}, headers=ADMIN).status_code == 201
    again = rollback_order(NEWER, MODEL_VERSION, key)
    assert _refusal(api, again) == (
        409,
        {"detail": f"rollback order {again['order_id']} goes back from {NEWER}, but store 's1' runs {MODEL_VERSION}"},
    )


def test_the_factory_cli_signs_an_order_central_accepts(
    api, two_versions, tmp_path, central_signing_key, monkeypatch, capsys
) -> None:
    from cryptography.hazmat.primitives import serialization

    from factory.cli import main

    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / "signing_key.pem").write_bytes(
        central_signing_key[0].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = tmp_path / "order.json"
    argv = ["rollback-order", "--from", NEWER, "--to", MODEL_VERSION, "--key-dir", str(key_dir), "--out", str(out)]
    assert main(argv) == 0
    order = json.loads(out.read_text())
    assert capsys.readouterr().err == f"wrote rollback order {order['order_id']} to {out}\n"
    assert api.client.post("/v1/rollbacks", json={"order": order, "store": None}, headers=ADMIN).status_code == 201

    assert main(["rollback-order", "--from", MODEL_VERSION, "--to", NEWER, "--key-dir", str(key_dir)]) == 2
    assert capsys.readouterr().err == f"edgeseg-factory: error: --to {NEWER} is not older than --from {MODEL_VERSION}\n"
    empty = tmp_path / "no-keys"
    assert main(["rollback-order", "--from", NEWER, "--to", MODEL_VERSION, "--key-dir", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"edgeseg-factory: error: no signing key in {empty} (the key that signed the manifests is needed)\n"
    )
    assert not empty.exists()  # never a fresh key that no device trusts


# ----------------------------------------------------------------------------- item 3 (report)
def test_devices_report_a_quarantined_outbox(api) -> None:
    device, other = api.add_device("s1"), api.add_device("s1")
    event = {"kind": "outbox_quarantined", "epoch_old": "", "epoch_new": EPOCH, "at": "2026-11-30T10:00:00+01:00"}
    url = f"/v1/devices/{device['id']}/events"
    forbidden = api.client.post(url, json=event, headers=bearer(other["token"]))
    assert (forbidden.status_code, forbidden.json()) == (
        403,
        {"detail": f"this token belongs to device {other['id']!r}, not {device['id']!r}"},
    )
    created = api.client.post(url, json={**event, "detail": "quick_check: malformed"}, headers=bearer(device["token"]))
    assert created.status_code == 201
    # a resend after a lost answer is the same event, not a second quarantine (the soak found it)
    again = api.client.post(url, json={**event, "detail": "quick_check: malformed"}, headers=bearer(device["token"]))
    assert (again.status_code, again.json()) == (201, created.json())
    assert len(api.client.get(url, headers=ADMIN).json()) == 1
    listed = api.client.get(url, headers=ADMIN).json()
    assert [{k: e[k] for k in ("kind", "epoch_old", "epoch_new", "at", "detail")} for e in listed] == [
        {
            "kind": "outbox_quarantined",
            "epoch_old": "",
            "epoch_new": EPOCH,
            "at": "2026-11-30T09:00:00Z",
            "detail": "quick_check: malformed",
        }
    ]
    bad = api.client.post(url, json={**event, "epoch_new": "zz"}, headers=bearer(device["token"]))
    assert (bad.status_code, bad.json()) == (
        422,
        {"detail": "epoch_new: String should match pattern '^([0-9a-f]{32})?$' (got 'zz')"},
    )
    assert api.client.get(url, headers=bearer(device["token"])).status_code == 403
    # Head office sees it on the dashboard (escaped like everything a device sends).
    api.client.post(url, json={**event, "detail": "<script>x</script>"}, headers=bearer(device["token"]))
    page = api.client.get("/dashboard", headers=ADMIN).text
    assert 'id="device-events"' in page and "outbox_quarantined" in page
    assert f"— → {EPOCH[:8]}" in page  # the legacy epoch "" shows as a dash
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page


# ----------------------------------------------------------------------------- item 13
def test_a_rollout_to_a_store_without_devices_needs_create_store(api, test_artifact) -> None:
    api.add_device("leeds")
    api.publish(test_artifact, rollout_to="none")
    detail = (
        "store 'leeds-typo' has no devices; check its name, or pass create_store "
        "(edgeseg-central --create) to roll out to it anyway"
    )
    typo = api.client.post("/v1/rollouts", json={"model_version": MODEL_VERSION, "store": "leeds-typo"}, headers=ADMIN)
    assert (typo.status_code, typo.json()) == (422, {"detail": detail})
    upload = api.client.post("/v1/models", json=upload_body(test_artifact, "leeds-typo"), headers=ADMIN)
    assert (upload.status_code, upload.json()) == (422, {"detail": detail})
    created = api.client.post(
        "/v1/rollouts",
        json={"model_version": MODEL_VERSION, "store": "york", "create_store": True},
        headers=ADMIN,
    )
    assert created.status_code == 201
    assert (
        api.client.post(
            "/v1/rollouts", json={"model_version": MODEL_VERSION, "store": "leeds"}, headers=ADMIN
        ).status_code
        == 201
    )


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize(
    ("token", "count"), [(" " * 16, 0), ("\t \n" * 8, 0), ("short-token", 11), ("a b c d e f g h i j", 10)]
)
def test_weak_admin_tokens_are_refused_outside_development(tmp_path, env, token, count) -> None:
    from central.core.config import Settings

    with pytest.raises(ValidationError) as info:
        Settings(env=env, admin_token=token, admin_token_file=tmp_path / "none")
    assert info.value.errors()[0]["msg"] == (
        "Value error, EDGESEG_ADMIN_TOKEN must hold at least 16 non-whitespace characters outside "
        f"development (got {count})"
    )
    assert Settings(env=env, admin_token=ADMIN_TOKEN).admin_token == ADMIN_TOKEN


@pytest.mark.parametrize(("env", "status"), [("production", 404), ("test", 404), ("development", 200)])
def test_swagger_from_a_cdn_is_served_in_development_only(tmp_path, env, status) -> None:
    from fastapi.testclient import TestClient

    from central.core.config import Settings
    from central.main import create_app

    settings = Settings(env=env, admin_token=ADMIN_TOKEN, database_url=f"sqlite:///{tmp_path / 'c.db'}")
    with TestClient(create_app(settings)) as client:
        assert client.get("/docs").status_code == status
        assert client.get("/redoc").status_code == status
        assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_factory_key_folder_is_private(tmp_path, umask) -> None:
    from factory.signing import load_or_create_key

    folder = tmp_path / "config" / "keys"
    previous = os.umask(umask)
    try:
        load_or_create_key(folder)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "signing_key.pem").stat().st_mode) == 0o600
