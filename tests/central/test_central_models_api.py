"""Model registration (verified with central's trusted key), rollout and download by devices."""

from __future__ import annotations

import hashlib

import pytest
from central_helpers import (
    ADMIN,
    MODEL_VERSION,
    bearer,
    new_signing_key,
    upload_body,
    write_artifact,
)


def test_upload_registers_a_verified_artifact(api, test_artifact) -> None:
    body = api.publish(test_artifact)
    assert {k: body[k] for k in ("model_version", "name", "version", "classes", "files")} == {
        "model_version": MODEL_VERSION,
        "name": "retail-tier",
        "version": "20261126T120000Z",
        "classes": ["high", "mid", "low"],
        "files": ["manifest.json", "manifest.sig", "model.onnx"],
    }
    assert body["onnx_sha256"] == hashlib.sha256((test_artifact / "model.onnx").read_bytes()).hexdigest()
    assert [r["store"] for r in body["rollouts"]] == [None]
    listed = api.client.get("/v1/models", headers=ADMIN).json()
    assert [m["model_version"] for m in listed] == [MODEL_VERSION]


def test_refused_uploads(api, tmp_path, central_signing_key) -> None:
    from edge_runtime.signing import key_id

    tampered = write_artifact(tmp_path / "t", central_signing_key[0], tamper=True)
    response = api.client.post("/v1/models", json=upload_body(tampered), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("artifact refused: model.onnx sha256 ")
    assert response.json()["detail"].endswith(
        "does not match the signed manifest ("
        + hashlib.sha256(b"onnx:retail-tier/20261126T120000Z").hexdigest()[:16]
        + "…)"
    )

    stranger = write_artifact(tmp_path / "s", new_signing_key())
    response = api.client.post("/v1/models", json=upload_body(stranger), headers=ADMIN)
    trusted = key_id(central_signing_key[0].public_key())
    assert (response.status_code, response.json()) == (
        422,
        {"detail": "artifact refused: manifest.json signature does not verify with the trusted "
                   f"key {trusted}"},
    )  # fmt: skip

    body = upload_body(write_artifact(tmp_path / "m", central_signing_key[0]))
    del body["files"]["manifest.sig"]
    response = api.client.post("/v1/models", json=body, headers=ADMIN)
    assert (response.status_code, response.json()) == (
        422, {"detail": "artifact is missing manifest.sig"}
    )  # fmt: skip

    body["files"]["manifest.sig"] = "not base64!"
    response = api.client.post("/v1/models", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("files.manifest.sig: not base64 (")

    response = api.client.post("/v1/models", json={"files": {"model.pkl": "AA=="}}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("files.model.pkl.[key]: Input should be ")
    assert api.client.get("/v1/models", headers=ADMIN).json() == []


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"format_version": 2}, "manifest.json format_version: 2 is not supported (this runtime reads [1]); "
                                "rebuild the artifact with a matching factory or update the runtime"),
        ({"extra_field": 1},
         "manifest.json extra_field: is not a field of the format (unknown fields: ['extra_field'])"),
        ({"target": {"name": "value_tier"}}, "manifest.json target.classes: is missing"),
        ({"target": {"name": "value_tier", "classes": ["only"]}},
         "manifest target.classes must list at least two distinct class names (got ['only'])"),
    ],
    ids=["format-version", "unknown-field", "missing-field", "one-class"],
)  # fmt: skip
def test_signed_manifests_breaking_the_contract_are_refused(api, test_artifact, central_signing_key, change, detail):  # type: ignore[no-untyped-def]
    """Central applies the device's artifact contract (edge_runtime.artifact) before storing."""
    import base64
    import json

    from factory.signing import sign_manifest

    manifest = {**json.loads((test_artifact / "manifest.json").read_bytes()), **change}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    body = upload_body(test_artifact)
    body["files"]["manifest.json"] = base64.b64encode(data).decode()
    body["files"]["manifest.sig"] = base64.b64encode(sign_manifest(data, central_signing_key[0])).decode()
    response = api.client.post("/v1/models", json=body, headers=ADMIN)
    expected = detail if detail.startswith("manifest target") else f"artifact refused: {detail}"
    assert (response.status_code, response.json()) == (422, {"detail": expected})
    assert api.client.get("/v1/models", headers=ADMIN).json() == []


def test_upload_file_names_are_the_contracts() -> None:
    """The upload schema lists exactly the files the registry stores (edge_runtime.artifact)."""
    from typing import get_args

    from central.schemas import ArtifactFileName
    from central.services.models import DEVICE_FILES, OPTIONAL_FILES

    assert set(get_args(ArtifactFileName)) == {*DEVICE_FILES, *OPTIONAL_FILES}


def test_admin_routes_refuse_devices_and_strangers(api, test_artifact) -> None:
    device = api.add_device()
    body = upload_body(test_artifact)
    for headers, status, detail in [
        ({}, 401, "missing bearer token: send 'Authorization: Bearer <token>'"),
        (bearer(device["token"]), 403, "this route needs the admin token"),
        (bearer("guess"), 403, "this route needs the admin token"),
    ]:
        response = api.client.post("/v1/models", json=body, headers=headers)
        assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert api.client.get("/v1/models", headers=ADMIN).json() == []


def test_current_model_follows_rollouts_and_files_download(api, test_artifact, tmp_path, central_signing_key) -> None:
    s1, s2 = api.add_device("s1"), api.add_device("s2")
    response = api.client.get("/v1/models/current", headers=bearer(s1["token"]))
    assert (response.status_code, response.json()) == (
        404, {"detail": "no model is rolled out to store 's1'"}
    )  # fmt: skip
    api.publish(test_artifact)
    newer = write_artifact(tmp_path, central_signing_key[0], version="20261201T000000Z")
    api.publish(newer, rollout_to="s2")

    current = api.client.get("/v1/models/current", headers=bearer(s1["token"])).json()
    assert current["model_version"] == MODEL_VERSION
    assert current["sha256"] == hashlib.sha256((test_artifact / "model.onnx").read_bytes()).hexdigest()
    assert current["files"] == {
        name: f"http://testserver/v1/models/retail-tier/20261126T120000Z/files/{name}"
        for name in ("model.onnx", "manifest.json", "manifest.sig")
    }
    for name, url in current["files"].items():
        downloaded = api.client.get(url, headers=bearer(s1["token"]))
        assert downloaded.status_code == 200
        assert downloaded.content == (test_artifact / name).read_bytes()
        assert current["file_sha256"][name] == hashlib.sha256(downloaded.content).hexdigest()

    other = api.client.get("/v1/models/current", headers=bearer(s2["token"])).json()
    assert other["model_version"] == "retail-tier/20261201T000000Z"

    newest = write_artifact(tmp_path, central_signing_key[0], version="20261202T000000Z")
    api.publish(newest, rollout_to="none")
    rolled = api.client.post(
        "/v1/rollouts", json={"model_version": "retail-tier/20261202T000000Z", "store": "s2"}, headers=ADMIN
    )
    assert rolled.status_code == 201 and rolled.json()["store"] == "s2"
    again = api.client.get("/v1/models/current", headers=bearer(s2["token"])).json()
    assert again["model_version"] == "retail-tier/20261202T000000Z"
    # Going back is not a rollout: it needs a signed rollback order (test_central_hardening_models).
    back = api.client.post("/v1/rollouts", json={"model_version": MODEL_VERSION, "store": "s2"}, headers=ADMIN)
    assert (back.status_code, back.json()) == (
        409,
        {
            "detail": f"{MODEL_VERSION} is older than retail-tier/20261202T000000Z, which store 's2' runs; "
            "going back needs a signed rollback order (POST /v1/rollbacks)"
        },
    )

    unknown = api.client.post("/v1/rollouts", json={"model_version": "x/y", "store": None}, headers=ADMIN)
    assert (unknown.status_code, unknown.json()) == (
        404, {"detail": "model 'x/y' is not registered"}
    )  # fmt: skip
    missing = api.client.get("/v1/models/retail-tier/20261126T120000Z/files/card.md", headers=bearer(s1["token"]))
    assert (missing.status_code, missing.json()) == (
        404, {"detail": "model retail-tier/20261126T120000Z has no file 'card.md'"}
    )  # fmt: skip
    anonymous = api.client.get(current["files"]["model.onnx"])
    assert anonymous.status_code == 401


def test_model_reports_are_per_device(api, test_artifact) -> None:
    a, b = api.add_device(), api.add_device()
    body = {"model_version": MODEL_VERSION, "status": "refused", "reason": "SelfTestError: x"}
    response = api.client.post(f"/v1/devices/{a['id']}/model-report", json=body, headers=bearer(b["token"]))
    assert (response.status_code, response.json()) == (
        403, {"detail": f"this token belongs to device {b['id']!r}, not {a['id']!r}"}
    )  # fmt: skip
    ok = api.client.post(f"/v1/devices/{a['id']}/model-report", json=body, headers=bearer(a["token"]))
    assert ok.status_code == 201
    reports = api.client.get(f"/v1/devices/{a['id']}/model-reports", headers=ADMIN).json()
    assert [(r["model_version"], r["status"], r["reason"]) for r in reports] == [
        (MODEL_VERSION, "refused", "SelfTestError: x")
    ]


@pytest.mark.parametrize("status", ["installed", "refused"])
def test_model_report_status_is_checked(api, status) -> None:
    device = api.add_device()
    response = api.client.post(
        f"/v1/devices/{device['id']}/model-report",
        json={"model_version": MODEL_VERSION, "status": status + "x"},
        headers=bearer(device["token"]),
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": f"status: Input should be 'installed', 'refused' or 'rolled_back' (got '{status}x')"
    }
