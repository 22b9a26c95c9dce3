"""Issue 10, items 5, 6 and 11 (device side): no downgrade without a signed rollback order that
is used once; model names/versions checked before any file operation, every failure reported as
refused; a model swap killed at any step leaves the old model or the new one, never a broken one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from edge_update_stub import StubCentral, offer_for, signed_order, updater

from edge_runtime import Runtime
from edge_runtime.classifier import Classifier
from edge_runtime.updates import STEPS

V1 = "toy-seg/20261127T000000Z"  # toy_artifact
V2 = "toy-seg/20261127T010000Z"  # toy_artifact_b, built an hour later
STUB = Path(__file__).with_name("edge_update_stub.py")
SECRET = "updates-deployment-secret-0123456789"


def install(central: StubCentral, key: Path, models: Path, artifact: Path) -> str:
    central.artifact, central.offer = artifact, offer_for(artifact)
    return updater(central, key, models).update().status


# ---------------------------------------------------------------------- item 5
def test_an_older_offer_is_refused_without_a_rollback_order(toy_artifact, toy_artifact_b, toy_public_key, tmp_path):
    models, central = tmp_path / "models", StubCentral(None)
    assert install(central, toy_public_key, models, toy_artifact) == "installed"
    assert install(central, toy_public_key, models, toy_artifact_b) == "installed"
    report = updater(StubCentral(toy_artifact), toy_public_key, models).update()
    assert report.status == "refused"
    assert report.reason == (
        f"RollbackRefused: central offered {V1}, which is not newer than the running {V2}: "
        "going back needs a signed rollback order"
    )
    assert updater(central, toy_public_key, models).installed_version() == V2


def test_a_signed_rollback_order_is_applied_once(toy_key, toy_artifact, toy_artifact_b, toy_public_key, tmp_path):
    private, _ = toy_key
    models, central = tmp_path / "models", StubCentral(None)
    install(central, toy_public_key, models, toy_artifact_b)
    order = signed_order(private, V2, V1, "2026-11-30T12:00:00+00:00")
    back = StubCentral(toy_artifact, offer_for(toy_artifact, rollback=order))
    report = updater(back, toy_public_key, models).update()
    assert (report.status, report.model_version) == ("rolled_back", V1)
    assert back.reports == [{"model_version": V1, "status": "rolled_back", "reason": ""}]
    assert updater(back, toy_public_key, models).installed_version() == V1
    # Forward again (newer needs no order), then the same order replayed: refused.
    assert install(central, toy_public_key, models, toy_artifact_b) == "installed"
    replay = updater(back, toy_public_key, models).update()
    assert replay.status == "refused"
    assert (
        replay.reason == f"RollbackRefused: rollback order {order['order_id']} was applied before: a replay is refused"
    )
    # An order issued before the last one applied is refused too, even if never applied.
    older = signed_order(private, V2, V1, "2026-11-29T12:00:00+00:00")
    stale = updater(StubCentral(toy_artifact, offer_for(toy_artifact, rollback=older)), toy_public_key, models)
    assert "before the last order applied" in stale.update().reason
    assert updater(central, toy_public_key, models).installed_version() == V2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"to_version": "toy-seg/20261126T000000Z"}, "goes to toy-seg/20261126T000000Z, but central offered"),
        ({"from_version": "toy-seg/20261128T000000Z"}, "is from toy-seg/20261128T000000Z, but this device runs"),
        ({"signature": "AAAA"}, "SignatureError: rollback order "),
        ({"kind": "rollout"}, "kind must be 'rollback'"),
    ],
    ids=["other-target", "other-source", "bad-signature", "wrong-kind"],
)
def test_a_rollback_order_that_does_not_fit_is_refused(
    toy_key, toy_artifact, toy_artifact_b, toy_public_key, tmp_path, change, reason
):
    models = tmp_path / "models"
    install(StubCentral(None), toy_public_key, models, toy_artifact_b)
    order = signed_order(toy_key[0], V2, V1, "2026-11-30T12:00:00+00:00")
    if "signature" not in change:  # change the order and sign it again: only the content is wrong
        order = signed_order(toy_key[0], **{k: order[k] for k in ("from_version", "to_version", "issued_at")} | change)
    else:
        order.update(change)
    central = StubCentral(toy_artifact, offer_for(toy_artifact, rollback=order))
    report = updater(central, toy_public_key, models).update()
    assert report.status == "refused" and reason in report.reason
    assert central.reports[-1]["status"] == "refused"


# ---------------------------------------------------------------------- item 6
@pytest.mark.parametrize("model_version", ["x/..", "toy-seg/.", "../20261127T000000Z", "a b/1", "x", "x/y/z", 7])
def test_unsafe_names_are_refused_before_any_file_operation(toy_artifact, toy_public_key, tmp_path, model_version):
    models = tmp_path / "models"
    assert install(StubCentral(None), toy_public_key, models, toy_artifact) == "installed"
    before = sorted(str(p.relative_to(models)) for p in models.rglob("*"))
    central = StubCentral(toy_artifact, {**offer_for(toy_artifact), "model_version": model_version})
    report = updater(central, toy_public_key, models).update()
    assert report.status == "refused" and report.reason.startswith("UnsafeModelVersion: model_version ")
    assert "must match [A-Za-z0-9._-]+ and not be '.' or '..'" in report.reason or "must be a string" in report.reason
    assert central.paths == ["/v1/models/current", "/v1/devices/d-1/model-report"]  # no download
    assert sorted(str(p.relative_to(models)) for p in models.rglob("*")) == before
    assert updater(central, toy_public_key, models).installed_version() == V1


@pytest.mark.parametrize("broken", ["no-files", "file-missing-at-central", "files-not-a-dict"])
def test_a_failed_install_is_always_reported_as_refused(toy_artifact, toy_public_key, tmp_path, broken):
    offer = offer_for(toy_artifact)
    if broken == "no-files":
        del offer["files"]
    elif broken == "files-not-a-dict":
        offer["files"] = ["model.onnx"]
    else:
        offer["files"]["model.onnx"] = "/v1/models/gone/model.onnx.missing"
    central = StubCentral(toy_artifact, offer)
    report = updater(central, toy_public_key, tmp_path / "models").update()
    assert report.status == "refused" and central.reports[-1]["status"] == "refused"
    assert not (tmp_path / "models" / "current").exists()


# ---------------------------------------------------------------------- item 11
@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_a_swap_killed_at_any_step_leaves_a_whole_model(toy_artifact, toy_artifact_b, toy_public_key, tmp_path, step):
    models = tmp_path / "models"
    assert install(StubCentral(None), toy_public_key, models, toy_artifact) == "installed"
    child = subprocess.run(
        [sys.executable, str(STUB), str(toy_artifact_b), str(toy_public_key), str(models), step],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    current = (models / "current").resolve()
    assert current in (models / V1, models / V2)
    assert (current == models / V2) == (STEPS.index(step) >= STEPS.index("linked_current"))
    Classifier.load(current, toy_public_key)  # signature, hash and golden samples: complete
    runtime = Runtime(current, outbox_path=tmp_path / "o.db", device_id="d-1", secret=SECRET,
                      public_key=toy_public_key)  # the device starts  # fmt: skip
    runtime.close()
    # The next update finishes the job and leaves nothing of the interrupted one behind.
    report = updater(StubCentral(toy_artifact_b), toy_public_key, models).update()
    assert report.status in ("installed", "up_to_date") and (models / "current").resolve() == models / V2
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_no_leftovers_after_a_normal_update(toy_artifact, toy_public_key, tmp_path):
    models = tmp_path / "models"
    shutil.rmtree(models, ignore_errors=True)
    assert install(StubCentral(None), toy_public_key, models, toy_artifact) == "installed"
    assert sorted(p.name for p in models.iterdir()) == ["current", "toy-seg"]


def test_the_factorys_rollback_order_is_what_the_device_verifies(
    toy_key, toy_artifact, toy_artifact_b, toy_public_key, tmp_path
):
    """One canonical form: an order made by ``edgeseg-factory rollback-order`` is accepted."""
    factory_rollback = pytest.importorskip("factory.rollback")  # the factory is not on a device
    models = tmp_path / "models"
    install(StubCentral(None), toy_public_key, models, toy_artifact_b)
    order = factory_rollback.rollback_order(V2, V1, toy_key[0])
    report = updater(
        StubCentral(toy_artifact, offer_for(toy_artifact, rollback=order)), toy_public_key, models
    ).update()
    assert (report.status, report.model_version) == ("rolled_back", V1)
