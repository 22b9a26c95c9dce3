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
Standard library only (plus the runtime's own Classifier).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.exceptions import ModelIntegrityError, ModelLoadError, SyncError
from edge_runtime.signing import MANIFEST_NAME, MODEL_NAME, SIGNATURE_NAME
from edge_runtime.sync import (
    HttpTransport,
    RetryableError,
    add_connection_arguments,
    connection_from_args,
    edge_settings,
)

__all__ = ["CURRENT_LINK", "PREVIOUS_LINK", "ModelUpdater", "UpdateReport", "add_update_commands"]

log = logging.getLogger(__name__)

CURRENT_LINK = "current"
PREVIOUS_LINK = "previous"
FILES = (MODEL_NAME, MANIFEST_NAME, SIGNATURE_NAME)


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

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        token: str,
        public_key: Any,
        models_dir: str | Path,
        transport: HttpTransport | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> None:
        if public_key is None:
            raise ValueError(
                "The 'public_key' parameter of ModelUpdater is required: updates are verified "
                "with the device's trusted key. Got None instead."
            )
        if attempts < 1:
            raise ValueError(f"The 'attempts' parameter of ModelUpdater must be >= 1. Got {attempts!r} instead.")
        self.device_id = device_id
        self.public_key = public_key
        self.models_dir = Path(models_dir)
        self.transport = transport or HttpTransport(base_url, token=token, timeout=timeout)
        self.attempts = attempts

    # ------------------------------------------------------------------ central
    def _request(self, method: str, url: str, payload: Any = None, accept: str = "*/*") -> bytes:
        last: RetryableError | None = None
        for _ in range(self.attempts):
            try:
                return self.transport.request(method, url, payload, accept=accept)
            except RetryableError as exc:
                last = exc
        assert last is not None
        raise last

    def current(self) -> dict[str, Any] | None:
        """Central's answer for this device, or None when nothing is rolled out to its store."""
        try:
            body = self._request("GET", "/v1/models/current", accept="application/json")
        except SyncError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise
        return json.loads(body)

    def report(self, model_version: str, status: str, reason: str = "") -> None:
        """Tell central what happened (best effort: a lost report is logged, not raised)."""
        try:
            self._request(
                "POST",
                f"/v1/devices/{self.device_id}/model-report",
                {"model_version": model_version, "status": status, "reason": reason[:2000]},
                accept="application/json",
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
            return json.loads((folder / MANIFEST_NAME).read_bytes()).get("model_version")
        except (OSError, ValueError):
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
                content = self._request("GET", url)
                expected = hashes.get(file_name)
                actual = hashlib.sha256(content).hexdigest()
                if expected is not None and actual != expected:
                    raise ModelIntegrityError(
                        f"{file_name} downloaded with sha256 {actual[:16]}…, central announced {str(expected)[:16]}…"
                    )
                (incoming / file_name).write_bytes(content)
            from edge_runtime.classifier import Classifier

            classifier = Classifier.load(incoming, self.public_key)  # signature, hash, goldens
            if classifier.manifest.get("onnx_sha256") != offer.get("sha256"):
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

    def update(self, runtime: Any | None = None) -> UpdateReport:
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

    def rollback(self, runtime: Any | None = None) -> UpdateReport:
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


# ---------------------------------------------------------------------- command line
def add_update_commands(subparsers: Any) -> None:
    """Add ``update`` to ``edge-runtime``'s subparsers; its ``func(args) -> int`` runs it."""
    update = subparsers.add_parser("update", help="fetch, verify and install the model head office rolled out")
    add_connection_arguments(update)
    update.add_argument("--models-dir", required=True, help="holds <name>/<version> and 'current'")
    update.add_argument(
        "--public-key",
        default=None,
        help="trusted Ed25519 public key (default: EDGESEG_PUBLIC_KEY, else "
        "$EDGESEG_KEY_DIR/signing_key.pub.pem or ~/.config/edgeseg/keys/signing_key.pub.pem)",
    )
    update.add_argument("--rollback", action="store_true", help="go back to the previous model")
    update.set_defaults(func=run_update_command)


def run_update_command(args: argparse.Namespace) -> int:
    central, device_id, token = connection_from_args(args)
    updater = ModelUpdater(
        central,
        device_id=device_id,
        token=token,
        public_key=args.public_key or edge_settings().public_key,
        models_dir=args.models_dir,
    )
    try:
        report = updater.rollback() if args.rollback else updater.update()
    except (SyncError, ModelLoadError) as exc:
        print(f"edge-runtime: update failed: {exc}")
        return 1
    print(json.dumps(report.to_dict()))
    return 1 if report.status == "refused" else 0
