"""Model updates from head office: poll, download, verify, self-test, swap atomically.

``ModelUpdater.update(runtime)``:

1. ``GET /v1/models/current`` names the model this device's store should run (404: none).
2. The three files are downloaded into a fresh folder *inside* ``models_dir`` (same file
   system, so the final move is one atomic rename), each checked against central's sha256.
3. The folder is verified exactly as at start-up: Ed25519 signature of manifest.json with
   the device's trusted key, model.onnx sha256 against the signed manifest and against what
   central announced, then ``Classifier.load`` runs the golden samples.
4. Only then it is renamed to ``models_dir/<name>/<version>``, the ``current`` symlink is
   replaced atomically (the old target becomes ``previous``), and a running ``Runtime``
   swaps to it (keeping the old model in memory for ``rollback``).

Any failure leaves the running model and ``current`` untouched, deletes the download, and
is reported to central (``POST /v1/devices/{id}/model-report`` with status ``refused``).
Requests and their retries are :class:`~edge_runtime.client.HeadOfficeClient`'s (one policy
for the whole device). Standard library only (plus the runtime's own Classifier).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.artifact import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, read_manifest
from edge_runtime.client import HeadOfficeClient
from edge_runtime.exceptions import ModelIntegrityError, ModelLoadError, SyncError

if TYPE_CHECKING:
    from edge_runtime.classifier import PublicKey
    from edge_runtime.runtime import Runtime

__all__ = ["CURRENT_LINK", "CURRENT_PATH", "PREVIOUS_LINK", "ModelUpdater", "UpdateReport"]

log = logging.getLogger(__name__)

CURRENT_PATH = "/v1/models/current"
CURRENT_LINK = "current"
PREVIOUS_LINK = "previous"
FILES = (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE)


@dataclass
class UpdateReport:
    """``status``: "up_to_date", "none_rolled_out", "installed", "refused" or "rolled_back"."""

    status: str
    model_version: str | None = None
    artifact_dir: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (new link beside it, then rename over)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)


class ModelUpdater:
    """Keeps a device's model in line with what central rolled out to its store."""

    def __init__(self, head_office: HeadOfficeClient, *, public_key: PublicKey | None, models_dir: str | Path) -> None:
        if public_key is None:
            raise ValueError(
                "The 'public_key' parameter of ModelUpdater is required: updates are verified "
                "with the device's trusted key. Got None instead."
            )
        self.head_office = head_office
        self.public_key = public_key
        self.models_dir = Path(models_dir)

    @property
    def device_id(self) -> str:
        return self.head_office.device_id

    # ------------------------------------------------------------------ central
    def current(self) -> dict[str, Any] | None:
        """Central's answer for this device, or None when nothing is rolled out to its store."""
        try:
            return self.head_office.request_json("GET", CURRENT_PATH)
        except SyncError as exc:
            if exc.status == 404:
                return None
            raise

    def report(self, model_version: str, status: str, reason: str = "") -> None:
        """Tell central what happened (best effort: a lost report is logged, not raised)."""
        try:
            self.head_office.request_json(
                "POST",
                f"/v1/devices/{self.device_id}/model-report",
                {"model_version": model_version, "status": status, "reason": reason[:2000]},
            )
        except SyncError as exc:
            log.warning("could not report %s of %s to central: %s", status, model_version, exc)

    # ------------------------------------------------------------------ local state
    @property
    def current_dir(self) -> Path | None:
        link = self.models_dir / CURRENT_LINK
        return link.resolve() if link.is_symlink() else None

    def installed_version(self) -> str | None:
        folder = self.current_dir
        if folder is None:
            return None
        try:
            return read_manifest(folder).model_version
        except (OSError, ValueError):  # ManifestError is a ValueError
            return None

    # ------------------------------------------------------------------ the update
    def _download_and_verify(self, offer: dict[str, Any]) -> Path:
        """Download into models_dir, verify, self-test, move into place; return the folder."""
        model_version = str(offer["model_version"])
        name, _, version = model_version.partition("/")
        if not name or not version or "/" in version or name.startswith("."):
            raise ModelIntegrityError(f"central offered a malformed model_version {model_version!r}")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.models_dir))
        try:
            hashes = offer.get("file_sha256") or {}
            for file_name in FILES:
                url = offer["files"][file_name]
                content = self.head_office.request("GET", url)
                expected = hashes.get(file_name)
                actual = hashlib.sha256(content).hexdigest()
                if expected is not None and actual != expected:
                    raise ModelIntegrityError(
                        f"{file_name} downloaded with sha256 {actual[:16]}…, central announced {str(expected)[:16]}…"
                    )
                (incoming / file_name).write_bytes(content)
            from edge_runtime.classifier import Classifier

            classifier = Classifier.load(incoming, self.public_key)  # signature, hash, goldens
            if classifier.manifest.onnx_sha256 != offer.get("sha256"):
                raise ModelIntegrityError(
                    f"the signed manifest's onnx_sha256 is not the sha256 central announced for {model_version}"
                )
            if classifier.model_version != model_version:
                raise ModelIntegrityError(
                    f"central offered {model_version} but the signed manifest is {classifier.model_version}"
                )
            final = self.models_dir / name / version
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # same version downloaded before: keep the verified new copy
                shutil.rmtree(final)
            os.replace(incoming, final)
            return final
        finally:
            if incoming.exists():
                shutil.rmtree(incoming, ignore_errors=True)

    def update(self, runtime: Runtime | None = None) -> UpdateReport:
        """Bring this device to central's model. Never raises for a bad model: it is refused,
        reported and the running one kept; raises SyncError only if central is unreachable."""
        offer = self.current()
        if offer is None:
            return UpdateReport("none_rolled_out")
        model_version = str(offer["model_version"])
        running = runtime.model_version if runtime is not None else self.installed_version()
        if running == model_version:
            return UpdateReport("up_to_date", model_version, str(self.current_dir or ""))
        try:
            folder = self._download_and_verify(offer)
            if runtime is not None:
                runtime.swap_model(folder, self.public_key)
        except ModelLoadError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("refused model %s: %s", model_version, reason)
            self.report(model_version, "refused", reason)
            return UpdateReport("refused", model_version, reason=reason)
        previous = self.current_dir
        relative = os.path.relpath(folder, self.models_dir)
        _replace_symlink(self.models_dir / CURRENT_LINK, relative)
        if previous is not None and previous != folder:
            _replace_symlink(self.models_dir / PREVIOUS_LINK, os.path.relpath(previous, self.models_dir))
        self.report(model_version, "installed")
        return UpdateReport("installed", model_version, str(folder))

    def rollback(self, runtime: Runtime | None = None) -> UpdateReport:
        """Serve the previous model again (``current`` and ``previous`` swap places)."""
        previous_link = self.models_dir / PREVIOUS_LINK
        if not previous_link.is_symlink():
            raise ModelLoadError("no previous model to roll back to")
        previous, current = previous_link.resolve(), self.current_dir
        if runtime is not None:
            runtime.rollback()
        _replace_symlink(self.models_dir / CURRENT_LINK, os.path.relpath(previous, self.models_dir))
        if current is not None:
            _replace_symlink(previous_link, os.path.relpath(current, self.models_dir))
        version = self.installed_version() or previous.name
        self.report(version, "rolled_back")
        return UpdateReport("rolled_back", version, str(previous))
