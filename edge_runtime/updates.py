"""Model updates from head office: poll, download, verify, self-test, swap atomically.

``ModelUpdater.update(runtime)``:

1. ``GET /v1/models/current`` names the model this device's store should run (404: none).
   Its ``model_version`` must be ``<name>/<version>`` with both parts ``[A-Za-z0-9._-]+`` and
   neither ``.`` nor ``..`` (checked before any file operation), and newer than the running
   one (versions are UTC build times) -- or the offer carries a signed rollback order for
   exactly this step back that this device has not applied before (``edge_runtime.rollback``).
2. The three files are downloaded into a fresh folder *inside* ``models_dir`` (same file
   system, so the final move is one atomic rename), each checked against central's sha256,
   from central's own origin only (``HeadOfficeClient.url``).
3. The folder is verified exactly as at start-up: Ed25519 signature of manifest.json with
   the device's trusted key, model.onnx sha256 against the signed manifest and against what
   central announced, then ``Classifier.load`` runs the golden samples.
4. Only then it is renamed to ``models_dir/<name>/<version>``, the ``current`` symlink is
   replaced atomically (the old target becomes ``previous``), and a running ``Runtime``
   swaps to it (keeping the old model in memory for ``rollback``).

Power loss (issue 10 item 11): every downloaded file is fsynced, then the new folder, before
it is renamed; the rename is made durable by an fsync of its parent; the new ``current`` link is
made beside the old one and renamed over it, then ``models_dir`` is fsynced. So after a crash
at any point ``current`` names the old model or the new one, each complete; leftovers of an
interrupted update (``.incoming-*`` folders, temporary links) are removed by the next update.
``on_step(name)`` is called after each step (tests kill the process there).

Any failure leaves the running model and ``current`` untouched, deletes the download, and
is reported to central (``POST /v1/devices/{id}/model-report`` with status ``refused``):
``update`` raises only when central cannot be reached (``RetryableError``). Requests and their
retries are :class:`~edge_runtime.client.HeadOfficeClient`'s (one policy for the whole
device). Standard library only (plus the runtime's own Classifier).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.artifact import FLOAT_MODEL_FILE, MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, read_manifest
from edge_runtime.client import HeadOfficeClient
from edge_runtime.durable import fsync_dir, write_synced
from edge_runtime.exceptions import ModelIntegrityError, ModelLoadError, RetryableError, SyncError
from edge_runtime.rollback import (
    RollbackLedger,
    RollbackOrder,
    RollbackRefused,
    is_newer,
    split_model_version,
    verify_rollback_order,
)

if TYPE_CHECKING:
    from edge_runtime.classifier import PublicKey
    from edge_runtime.runtime import Runtime

__all__ = ["CURRENT_LINK", "CURRENT_PATH", "PREVIOUS_LINK", "STEPS", "ModelUpdater", "UpdateReport"]

log = logging.getLogger(__name__)

CURRENT_PATH = "/v1/models/current"
CURRENT_LINK = "current"
PREVIOUS_LINK = "previous"
FILES = (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE)
# Downloaded when central offers it: the float-only graph the device runs (its sha256 is signed in
# the manifest and checked by Classifier.load; without it the raw graph runs).
OPTIONAL_FILES = (FLOAT_MODEL_FILE,)
INCOMING_PREFIX = ".incoming-"
# The points ``on_step`` is called at, in order (the crash test kills the process at each).
STEPS = ("downloaded", "verified", "moved", "linked_current", "linked_previous")


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
    """Point ``link`` at ``target`` atomically and durably (new link beside it, rename over,
    fsync of the folder)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)
    fsync_dir(link.parent)


class ModelUpdater:
    """Keeps a device's model in line with what central rolled out to its store."""

    def __init__(
        self,
        head_office: HeadOfficeClient,
        *,
        public_key: PublicKey | None,
        models_dir: str | Path,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        if public_key is None:
            raise ValueError(
                "The 'public_key' parameter of ModelUpdater is required: updates are verified "
                "with the device's trusted key. Got None instead."
            )
        self.head_office = head_office
        self.public_key = public_key
        self.models_dir = Path(models_dir)
        self.ledger = RollbackLedger(self.models_dir)
        self._on_step = on_step

    @property
    def device_id(self) -> str:
        return self.head_office.device_id

    def _step(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(name)

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

    def clean_leftovers(self) -> list[Path]:
        """Remove what an interrupted update left (download folders, temporary links)."""
        removed: list[Path] = []
        if not self.models_dir.is_dir():
            return removed
        for path in self.models_dir.iterdir():
            if path.name.startswith(INCOMING_PREFIX) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.name.startswith(".") and path.name.endswith(".tmp") and path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # ------------------------------------------------------------------ the update
    def _permission(self, model_version: str, running: str | None, offer: dict[str, Any]) -> RollbackOrder | None:
        """None if ``model_version`` is newer than ``running``; the verified rollback order if
        going back is ordered; RollbackRefused otherwise."""
        if is_newer(model_version, running):
            return None
        raw = offer.get("rollback")
        if raw is None:
            raise RollbackRefused(
                f"central offered {model_version}, which is not newer than the running {running}: "
                "going back needs a signed rollback order"
            )
        order = verify_rollback_order(raw, self.public_key)
        self.ledger.check(order, running=running, offered=model_version)
        return order

    def _download_and_verify(self, offer: dict[str, Any], name: str, version: str) -> Path:
        """Download into models_dir, verify, self-test, move into place; return the folder."""
        model_version = f"{name}/{version}"
        files = offer.get("files")
        if not isinstance(files, dict) or not all(isinstance(files.get(f), str) for f in FILES):
            raise ModelIntegrityError(f"central's offer of {model_version} does not name a URL for each of {FILES}")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=self.models_dir))
        try:
            hashes = offer.get("file_sha256") or {}
            offered = [*FILES, *(f for f in OPTIONAL_FILES if isinstance(files.get(f), str))]
            for file_name in offered:
                content = self.head_office.request("GET", files[file_name])
                expected = hashes.get(file_name)
                actual = hashlib.sha256(content).hexdigest()
                if expected is not None and actual != expected:
                    raise ModelIntegrityError(
                        f"{file_name} downloaded with sha256 {actual[:16]}…, central announced {str(expected)[:16]}…"
                    )
                write_synced(incoming / file_name, content)
            fsync_dir(incoming)
            self._step("downloaded")
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
            self._step("verified")
            parent = self.models_dir / name
            parent.mkdir(exist_ok=True)
            fsync_dir(self.models_dir)
            final = parent / version
            if final.exists():  # same version downloaded before: keep the verified new copy
                aside = Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=self.models_dir))
                os.replace(final, aside / version)
            os.replace(incoming, final)
            fsync_dir(parent)
            self._step("moved")
            return final
        finally:
            self.clean_leftovers()

    def update(self, runtime: Runtime | None = None) -> UpdateReport:
        """Bring this device to central's model. Never raises for a bad or unwanted model: it
        is refused, reported and the running one kept; raises SyncError only when central
        cannot be reached."""
        self.clean_leftovers()  # of an update a crash or power loss interrupted
        offer = self.current()
        if offer is None:
            return UpdateReport("none_rolled_out")
        shown = str(offer.get("model_version"))[:200]
        try:
            name, version = split_model_version(offer.get("model_version"))  # before any file
            model_version = f"{name}/{version}"
            running = runtime.model_version if runtime is not None else self.installed_version()
            if running == model_version:
                return UpdateReport("up_to_date", model_version, str(self.current_dir or ""))
            order = self._permission(model_version, running, offer)
            folder = self._download_and_verify(offer, name, version)
            if runtime is not None:
                runtime.swap_model(folder, self.public_key)
            self._switch(folder)
            if order is not None:
                self.ledger.record(order)
        except RetryableError:
            raise  # central is away: nothing to refuse, try again later
        except (ModelLoadError, SyncError, OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("refused model %s: %s", shown, reason)
            self.report(shown, "refused", reason)
            return UpdateReport("refused", shown, reason=reason)
        status = "installed" if order is None else "rolled_back"
        self.report(model_version, status)
        return UpdateReport(status, model_version, str(folder))

    def _switch(self, folder: Path) -> None:
        """``current`` -> folder, then ``previous`` -> what current was (each durable)."""
        previous = self.current_dir
        _replace_symlink(self.models_dir / CURRENT_LINK, os.path.relpath(folder, self.models_dir))
        self._step("linked_current")
        if previous is not None and previous != folder:
            _replace_symlink(self.models_dir / PREVIOUS_LINK, os.path.relpath(previous, self.models_dir))
        self._step("linked_previous")

    def rollback(self, runtime: Runtime | None = None) -> UpdateReport:
        """Serve the previous model again (``current`` and ``previous`` swap places).

        An operator's local action on this device; central's way back is a signed rollback
        order in its offer (see ``update``)."""
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
