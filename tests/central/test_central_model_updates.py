"""Model updates end to end: central (uvicorn) serves real signed artifacts from the factory; the
device's ModelUpdater downloads, verifies, self-tests, swaps, rolls back, and refuses and
reports a bad one while the running model stays."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from central_helpers import ADMIN_TOKEN, CentralProcess, free_port, upload_body

from edge_runtime.client import HeadOfficeClient, Request, Response, UrllibTransport
from edge_runtime.updates import ModelUpdater

pytestmark = pytest.mark.slow


@pytest.fixture
def central(tmp_path, signing_public_key):  # type: ignore[no-untyped-def]
    process = CentralProcess(
        {
            "EDGESEG_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
            "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
            "EDGESEG_ENV": "test",
            "EDGESEG_PUBLIC_KEY_PATH": str(signing_public_key),
        },
        free_port(),
        tmp_path / "central.log",
    )
    process.start()
    yield process
    process.kill()


def _version(artifact: Path) -> str:
    return json.loads((artifact / "manifest.json").read_text())["model_version"]


def _updater(central, device, signing_public_key, models_dir, transport=None):  # type: ignore[no-untyped-def]
    head_office = HeadOfficeClient(
        central.url, device_id=device["id"], token=device["token"], transport=transport, allow_http=True
    )
    return ModelUpdater(head_office, public_key=signing_public_key, models_dir=models_dir)


def _reports(central, device) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [
        (r["model_version"], r["status"], r["reason"])
        for r in central.call("GET", f"/v1/devices/{device['id']}/model-reports")
    ]


def test_update_swap_and_rollback(central, small_artifact, other_artifact, signing_public_key, tmp_path) -> None:
    from edge_runtime import Runtime

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    models_dir = tmp_path / "models"
    updater = _updater(central, device, signing_public_key, models_dir)
    assert updater.update().status == "none_rolled_out"

    central.call("POST", "/v1/models", upload_body(small_artifact))
    first = updater.update()
    assert (first.status, first.model_version) == ("installed", _version(small_artifact))
    assert updater.current_dir == models_dir / _version(small_artifact)
    assert updater.update().status == "up_to_date"
    # the float-only graph the factory signed travels with the update, so the till runs it
    assert (small_artifact / "model_float.onnx").is_file()
    installed_float = (updater.current_dir / "model_float.onnx").read_bytes()
    assert installed_float == (small_artifact / "model_float.onnx").read_bytes()

    runtime = Runtime(
        updater.current_dir,
        outbox_path=tmp_path / "outbox.db",
        device_id=device["id"],
        secret="0123456789abcdef0123",
        public_key=signing_public_key,
    )
    central.call("POST", "/v1/models", upload_body(other_artifact, rollout_to="s1"))
    second = updater.update(runtime)
    assert (second.status, runtime.model_version) == ("installed", _version(other_artifact))
    assert updater.current_dir == models_dir / _version(other_artifact)
    assert (models_dir / "previous").resolve() == models_dir / _version(small_artifact)

    back = updater.rollback(runtime)
    assert (back.status, back.model_version) == ("rolled_back", _version(small_artifact))
    assert runtime.model_version == _version(small_artifact)
    assert updater.current_dir == models_dir / _version(small_artifact)
    assert _reports(central, device) == [
        (_version(small_artifact), "installed", ""),
        (_version(other_artifact), "installed", ""),
        (_version(small_artifact), "rolled_back", ""),
    ]
    listed = {d["id"]: d for d in central.call("GET", "/v1/devices")}
    assert listed[device["id"]]["model_version"] == _version(other_artifact)
    runtime.close()


class CorruptingTransport(UrllibTransport):
    """A network that flips one byte of model.onnx (and optionally hides central's hashes)."""

    def __init__(self, *, hide_hashes: bool) -> None:
        self.hide_hashes = hide_hashes

    def handle_request(self, request: Request) -> Response:
        answer = super().handle_request(request)
        body = answer.content
        if request.url.endswith("/model.onnx"):
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if self.hide_hashes and request.url.endswith("/v1/models/current"):
            offer = json.loads(body)
            offer["file_sha256"] = {}
            body = json.dumps(offer).encode()
        return Response(answer.status_code, body, answer.headers)


@pytest.mark.parametrize(
    ("hide_hashes", "reason"),
    [
        (False, "ModelIntegrityError: model.onnx downloaded with sha256 "),
        (True, "ModelIntegrityError: model.onnx sha256 "),
    ],
    ids=["central-hash", "signed-manifest-hash"],
)
def test_corrupted_download_is_refused_and_reported(
    central, small_artifact, signing_public_key, tmp_path, hide_hashes, reason
) -> None:
    device = central.call("POST", "/v1/devices", {"store": "s1"})
    central.call("POST", "/v1/models", upload_body(small_artifact))
    transport = CorruptingTransport(hide_hashes=hide_hashes)
    models_dir = tmp_path / "models"
    report = _updater(central, device, signing_public_key, models_dir, transport).update()
    assert report.status == "refused" and report.reason.startswith(reason)
    assert not (models_dir / "current").exists()
    assert [p.name for p in models_dir.iterdir()] == []  # the download was removed
    assert _reports(central, device) == [(_version(small_artifact), "refused", report.reason)]


def test_model_failing_its_golden_samples_is_refused(
    central, small_artifact, signing_public_key, isolated_key_dir, tmp_path
) -> None:
    from factory.signing import load_or_create_key, sign_manifest

    manifest = json.loads((small_artifact / "manifest.json").read_text())
    name = manifest["name"]
    manifest["version"] = "20991231T000000Z"
    manifest["model_version"] = f"{name}/20991231T000000Z"
    golden = manifest["golden_samples"][0]
    classes = manifest["target"]["classes"]
    golden["label"] = next(c for c in classes if c != golden["label"])
    bad = tmp_path / "bad" / name / "20991231T000000Z"
    bad.mkdir(parents=True)
    shutil.copy(small_artifact / "model.onnx", bad / "model.onnx")
    if (small_artifact / "model_float.onnx").is_file():
        shutil.copy(small_artifact / "model_float.onnx", bad / "model_float.onnx")
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bad / "manifest.json").write_bytes(data)
    (bad / "manifest.sig").write_bytes(sign_manifest(data, load_or_create_key(isolated_key_dir)))

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    central.call("POST", "/v1/models", upload_body(small_artifact))
    updater = _updater(central, device, signing_public_key, tmp_path / "models")
    assert updater.update().status == "installed"
    central.call("POST", "/v1/models", upload_body(bad))  # signed, so central accepts it
    report = updater.update()
    assert report.status == "refused"
    assert report.reason.startswith("SelfTestError: golden sample 0: expected label ")
    assert updater.installed_version() == _version(small_artifact)
    assert _reports(central, device)[-1] == (manifest["model_version"], "refused", report.reason)


def test_device_drift_histograms_line_up_with_centrals_reference(
    central, small_artifact, signing_public_key, tmp_path
) -> None:
    """The runtime's drift snapshot of a real model is accepted bin for bin by central."""
    from edge_runtime import Runtime
    from edge_runtime.sync import SyncClient

    device = central.call("POST", "/v1/devices", {"store": "s1"})
    central.call("POST", "/v1/models", upload_body(small_artifact))
    manifest = json.loads((small_artifact / "manifest.json").read_text())
    runtime = Runtime(
        small_artifact,
        outbox_path=tmp_path / "outbox.db",
        device_id=device["id"],
        secret="0123456789abcdef0123",
        public_key=signing_public_key,
        contract="lenient",  # the golden rows include one with every input missing
    )
    records = [g["record"] for g in manifest["golden_samples"]] * 25
    for record in records:
        runtime.classify(record)
    snapshot = runtime.drift_snapshot(reset=True)
    client = SyncClient(HeadOfficeClient(central.url, device_id=device["id"], token=device["token"], allow_http=True))
    answer = client.report_drift(snapshot)
    assert answer["model_version"] == manifest["model_version"]
    assert answer["rows"] == len(records)
    assert set(answer["psi"]) == set(snapshot["inputs"]) == set(manifest["reference"])
    # A handful of records repeated 25 times is nothing like the training distribution.
    assert answer["flagged"] and all(answer["psi"][name] > 0.2 for name in answer["flagged"])
    report = client.sync_once(runtime.outbox)
    assert (report.stored, report.acked_through) == (len(records), len(records))
    runtime.close()


def test_an_artifact_whose_devices_run_the_float_graph_needs_its_signed_file(central, small_artifact) -> None:
    """Central refuses to register a model every updated till would fall back from or refuse."""
    import base64
    import urllib.error

    def refusal(body: dict) -> tuple[int, str]:  # type: ignore[type-arg]
        with pytest.raises(urllib.error.HTTPError) as info:
            central.call("POST", "/v1/models", body)
        return info.value.code, json.loads(info.value.read())["detail"]

    body = upload_body(small_artifact)
    del body["files"]["model_float.onnx"]
    assert refusal(body) == (422, "artifact is missing model_float.onnx (its manifest has a float_graph section)")

    body = upload_body(small_artifact)
    body["files"]["model_float.onnx"] = base64.b64encode(b"not the signed graph").decode()
    status, detail = refusal(body)
    assert status == 422 and detail.startswith("model_float.onnx has sha256 ")
    assert detail.endswith("the signed manifest says " + _float_sha(small_artifact)[:16] + "…")


def _float_sha(artifact: Path) -> str:
    return str(json.loads((artifact / "manifest.json").read_text())["float_graph"]["sha256"])
