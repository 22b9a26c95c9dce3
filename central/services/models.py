"""Models: register a signed artifact (verified exactly as a device would), roll it out, serve it.

Used by ``POST /v1/models`` (an upload), ``edgeseg-central model publish`` (a local folder),
``POST /v1/rollouts`` and the device routes that fetch the current model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from central.models import Model, ModelFile, Rollout, utc_now
from central.schemas import ArtifactFileName
from central.services.errors import ArtifactRejected, NotFound, TooLarge, Unavailable
from edge_runtime.artifact import CARD_FILE, CARD_HTML_FILE, MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, Manifest
from edge_runtime.exceptions import ModelLoadError, SignatureError
from edge_runtime.signing import key_id, load_public_key, verify_artifact

__all__ = [
    "DEVICE_FILES",
    "OPTIONAL_FILES",
    "ArtifactRejected",
    "CurrentModel",
    "current_model",
    "current_model_for_store",
    "get_model_file",
    "list_models",
    "register_artifact",
    "register_artifact_dir",
    "register_upload",
    "rollout",
]

# What a device downloads and verifies; the model card travels along for head office only.
DEVICE_FILES = (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE)
OPTIONAL_FILES = (CARD_FILE, CARD_HTML_FILE)


def _check_manifest(manifest: Manifest) -> None:
    """Central's rules on top of the contract (which ``verify_artifact`` has already applied).

    Results are keyed by ``model_version``, so it must be the ``<name>/<version>`` the files
    are served under; a classifier needs two distinct, non-empty class names.
    """
    expected = f"{manifest.name}/{manifest.version}"
    if manifest.model_version != expected:
        raise ArtifactRejected(
            f"manifest model_version {manifest.model_version!r} is not '<name>/<version>' "
            f"({manifest.name!r}/{manifest.version!r})"
        )
    classes = manifest.classes
    if len(classes) < 2 or not all(classes) or len(set(classes)) != len(classes):
        raise ArtifactRejected(
            f"manifest target.classes must list at least two distinct class names (got {list(classes)!r})"
        )


def register_artifact(
    session: Session,
    files: Mapping[str, bytes],
    public_key: Any,
    *,
    rollout_to: str | None = "all",
) -> Model:
    """Verify ``files`` (name -> bytes) with ``public_key``, store them and roll out; commits.

    ``rollout_to``: "all" (every store), "none" (register only) or a store name. Registering
    the same artifact again only adds the rollout. Raises ArtifactRejected (nothing stored).
    """
    missing = [name for name in DEVICE_FILES if name not in files]
    if missing:
        raise ArtifactRejected(f"artifact is missing {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="edgeseg-upload-") as tmp:
        for name in DEVICE_FILES:
            (Path(tmp) / name).write_bytes(files[name])
        try:
            manifest = verify_artifact(tmp, public_key)
        except ModelLoadError as exc:
            raise ArtifactRejected(f"artifact refused: {exc}") from exc
    _check_manifest(manifest)
    model_version = manifest.model_version
    existing = session.get(Model, model_version)
    if existing is not None:
        if existing.onnx_sha256 != manifest.onnx_sha256:
            raise ArtifactRejected(f"{model_version} is already registered with a different {MODEL_FILE}")
        model = existing
    else:
        model = Model(
            model_version=model_version,
            name=manifest.name,
            version=manifest.version,
            classes=list(manifest.classes),
            reference={name: ref.to_json() for name, ref in manifest.reference.items()},
            manifest=manifest.to_json(),
            onnx_sha256=manifest.onnx_sha256,
            key_id=key_id(load_public_key(public_key)),
            registered_at=utc_now(),
        )
        session.add(model)
        session.flush()
        for file_name, content in files.items():
            if file_name in DEVICE_FILES or file_name in OPTIONAL_FILES:
                session.add(
                    ModelFile(
                        model_version=model_version,
                        name=file_name,
                        content=content,
                        sha256=hashlib.sha256(content).hexdigest(),
                    )
                )
    if rollout_to is not None and rollout_to != "none":
        _add_rollout(session, model_version, None if rollout_to == "all" else rollout_to)
    session.commit()
    return model


def register_upload(
    session: Session,
    encoded: Mapping[ArtifactFileName, str],
    *,
    public_key_path: Path,
    max_bytes: int,
    rollout_to: str = "all",
) -> Model:
    """``POST /v1/models``: decode the base64 files, bound their size, verify and register.

    Raises Rejected (not base64, or the artifact is refused), TooLarge (past ``max_bytes``,
    ``EDGESEG_MAX_ARTIFACT_BYTES``) or Unavailable (central's trusted key is unusable).
    """
    files: dict[str, bytes] = {}
    for name, text in encoded.items():
        try:
            files[name] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ArtifactRejected(f"files.{name}: not base64 ({exc})") from exc
    total = sum(len(content) for content in files.values())
    if total > max_bytes:
        raise TooLarge(f"artifact is {total} bytes; the limit is {max_bytes} (EDGESEG_MAX_ARTIFACT_BYTES)")
    try:
        key = load_public_key(public_key_path)
    except SignatureError as exc:
        raise Unavailable(f"central has no usable trusted public key: {exc}") from exc
    return register_artifact(session, files, key, rollout_to=rollout_to)


def register_artifact_dir(
    session: Session, artifact_dir: str | Path, public_key: Any, *, rollout_to: str | None = "all"
) -> Model:
    """``edgeseg-central model publish``: register the artifact files found in a folder."""
    folder = Path(artifact_dir)
    files = {}
    for name in DEVICE_FILES + OPTIONAL_FILES:
        path = folder / name
        if path.is_file():
            files[name] = path.read_bytes()
    return register_artifact(session, files, public_key, rollout_to=rollout_to)


def _add_rollout(session: Session, model_version: str, store: str | None) -> Rollout:
    entry = Rollout(model_version=model_version, store=store, created_at=utc_now())
    session.add(entry)
    session.flush()
    return entry


def rollout(session: Session, model_version: str, store: str | None) -> Rollout:
    """Point ``store`` (None: every store) at a registered model; commits. Raises NotFound."""
    if session.get(Model, model_version) is None:
        raise NotFound(f"model {model_version!r} is not registered")
    entry = _add_rollout(session, model_version, store)
    session.commit()
    return entry


def list_models(session: Session) -> list[Model]:
    """Registered models, oldest first, with their file names and rollouts loaded (3 queries)."""
    query = (
        select(Model)
        .options(selectinload(Model.files), selectinload(Model.rollouts))
        .order_by(Model.registered_at, Model.model_version)
    )
    return list(session.scalars(query))


def current_model_for_store(session: Session, store: str) -> Model | None:
    """The newest rollout naming this store, else the newest rollout to every store."""
    for condition in (Rollout.store == store, Rollout.store.is_(None)):
        version = session.scalars(
            select(Rollout.model_version)
            .where(condition)
            .order_by(Rollout.created_at.desc(), Rollout.id.desc())
            .limit(1)
        ).first()
        if version is not None:
            return session.get(Model, version)
    return None


@dataclass(frozen=True)
class CurrentModel:
    """The model a store should run and the sha256 of each file a device downloads."""

    model: Model
    file_sha256: dict[str, str]


def current_model(session: Session, store: str) -> CurrentModel:
    """What a device of ``store`` should run. Raises NotFound when nothing is rolled out."""
    model = current_model_for_store(session, store)
    if model is None:
        raise NotFound(f"no model is rolled out to store {store!r}")
    query = select(ModelFile.name, ModelFile.sha256).where(
        ModelFile.model_version == model.model_version, ModelFile.name.in_(DEVICE_FILES)
    )
    return CurrentModel(model, {name: sha for name, sha in session.execute(query)})


def get_model_file(session: Session, model_version: str, file_name: str) -> ModelFile:
    """One stored file of a model. Raises NotFound."""
    entry = session.get(ModelFile, (model_version, file_name))
    if entry is None:
        raise NotFound(f"model {model_version} has no file {file_name!r}")
    return entry
