"""Models: register a signed artifact (verified exactly as a device would), roll it out, serve it.

Used by ``POST /v1/models`` (an upload), ``edgeseg-central model publish`` (a local folder),
``POST /v1/rollouts``, ``POST /v1/rollbacks`` and the device routes that fetch the current model.

Rules (issue 10): model names and versions are single safe path components
(``[A-Za-z0-9._-]+``, never ``.``/``..``); versions are ordered by their string (the factory's
``YYYYMMDDTHHMMSSZ``), so a rollout never moves a store back unless a signed rollback order
(made with the factory's key, verified here and again by the device) says so; a device is
served only models rolled out to its store (or to every store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from central.models import Device, Model, ModelFile, Rollout, utc_now
from central.schemas import ArtifactFileName, RollbackOrder, check_model_part
from central.services.errors import ArtifactRejected, Conflict, NotFound, Rejected, TooLarge, Unavailable
from edge_runtime.artifact import (
    CARD_FILE,
    CARD_HTML_FILE,
    FLOAT_MODEL_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    Manifest,
)
from edge_runtime.exceptions import ModelLoadError, SignatureError
from edge_runtime.signing import key_id, load_public_key, verify_artifact

__all__ = [
    "DEVICE_FILES",
    "DEVICE_OPTIONAL_FILES",
    "OPTIONAL_FILES",
    "ArtifactRejected",
    "CurrentModel",
    "current_model",
    "current_model_for_store",
    "get_model_file",
    "is_rolled_out",
    "list_models",
    "model_version_of",
    "register_artifact",
    "register_artifact_dir",
    "register_upload",
    "rollback",
    "rollback_order_bytes",
    "rollout",
]

# What a device downloads and verifies; the float-only graph is offered when the artifact has
# one (the device runs it, docs/ARTIFACT.md); the model card travels along for head office only.
DEVICE_FILES = (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE)
DEVICE_OPTIONAL_FILES = (FLOAT_MODEL_FILE,)
OPTIONAL_FILES = (*DEVICE_OPTIONAL_FILES, CARD_FILE, CARD_HTML_FILE)


def _check_manifest(manifest: Manifest) -> None:
    """Central's rules on top of the contract (which ``verify_artifact`` has already applied).

    Results are keyed by ``model_version``, so it must be the ``<name>/<version>`` the files
    are served under; a classifier needs two distinct, non-empty class names.
    """
    for what, value in (("name", manifest.name), ("version", manifest.version)):
        try:
            check_model_part(value, what)
        except ValueError as exc:
            raise ArtifactRejected(f"manifest {what}: {exc}") from None
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


def _check_float_graph(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """A manifest whose devices run the float graph must come with its exact signed bytes.

    Without this check central would store a model every updated till falls back from (or,
    with a wrong file, refuses at load) only after it was rolled out.
    """
    signed = manifest.float_graph
    content = files.get(FLOAT_MODEL_FILE)
    if signed is None:
        if content is not None:
            raise ArtifactRejected(f"artifact has {FLOAT_MODEL_FILE} but its manifest has no float_graph section")
        return
    if content is None:
        raise ArtifactRejected(f"artifact is missing {FLOAT_MODEL_FILE} (its manifest has a float_graph section)")
    actual = hashlib.sha256(content).hexdigest()
    if actual != signed.sha256:
        raise ArtifactRejected(
            f"{FLOAT_MODEL_FILE} has sha256 {actual[:16]}…, the signed manifest says {signed.sha256[:16]}…"
        )


def register_artifact(
    session: Session,
    files: Mapping[str, bytes],
    public_key: Any,
    *,
    rollout_to: str | None = "all",
    create_store: bool = False,
) -> Model:
    """Verify ``files`` (name -> bytes) with ``public_key``, store them and roll out; commits.

    ``rollout_to``: "all" (every store), "none" (register only) or a store name (one with
    devices, unless ``create_store``). Registering the same artifact again only adds the
    rollout. Raises ArtifactRejected (nothing stored), Rejected (a store without devices) or
    Conflict (the rollout would move a store back to an older version).
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
    _check_float_graph(manifest, files)
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
        store = None if rollout_to == "all" else rollout_to
        _check_rollout(session, model, store, create_store=create_store)
        _add_rollout(session, model_version, store)
    session.commit()
    return model


def register_upload(
    session: Session,
    encoded: Mapping[ArtifactFileName, str],
    *,
    public_key_path: Path,
    max_bytes: int,
    rollout_to: str = "all",
    create_store: bool = False,
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
    return register_artifact(session, files, key, rollout_to=rollout_to, create_store=create_store)


def register_artifact_dir(
    session: Session,
    artifact_dir: str | Path,
    public_key: Any,
    *,
    rollout_to: str | None = "all",
    create_store: bool = False,
) -> Model:
    """``edgeseg-central model publish``: register the artifact files found in a folder."""
    folder = Path(artifact_dir)
    files = {}
    for name in DEVICE_FILES + OPTIONAL_FILES:
        path = folder / name
        if path.is_file():
            files[name] = path.read_bytes()
    return register_artifact(session, files, public_key, rollout_to=rollout_to, create_store=create_store)


def model_version_of(name: str, version: str) -> str:
    """``name/version`` from a route's path, each part checked (422 naming the bad one)."""
    for what, value in (("name", name), ("version", version)):
        try:
            check_model_part(value, what)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
    return f"{name}/{version}"


def _target(store: str | None) -> str:
    return "every store" if store is None else f"store {store!r}"


def _current_rollout(session: Session, store: str | None) -> Rollout | None:
    """The rollout that decides what ``store`` runs (None: the newest one to every store)."""
    conditions = [Rollout.store.is_(None)] if store is None else [Rollout.store == store, Rollout.store.is_(None)]
    for condition in conditions:
        entry = session.scalars(
            select(Rollout).where(condition).order_by(Rollout.created_at.desc(), Rollout.id.desc()).limit(1)
        ).first()
        if entry is not None:
            return entry
    return None


def _check_rollout(session: Session, model: Model, store: str | None, *, create_store: bool) -> None:
    """Refuse a store nobody has registered a device for (a typo would go unnoticed) unless
    ``create_store``, and a version older than what the target runs now (that is a rollback)."""
    if store is not None and not create_store:
        if session.scalars(select(Device.id).where(Device.store == store).limit(1)).first() is None:
            raise Rejected(
                f"store {store!r} has no devices; check its name, or pass create_store "
                "(edgeseg-central --create) to roll out to it anyway"
            )
    current = _current_rollout(session, store)
    if current is not None:
        running = session.get(Model, current.model_version)
        if running is not None and model.version < running.version:
            raise Conflict(
                f"{model.model_version} is older than {running.model_version}, which {_target(store)} runs; "
                "going back needs a signed rollback order (POST /v1/rollbacks)"
            )


def _add_rollout(
    session: Session, model_version: str, store: str | None, order: dict[str, Any] | None = None
) -> Rollout:
    entry = Rollout(
        model_version=model_version,
        store=store,
        created_at=utc_now(),
        rollback_order_id=None if order is None else order["order_id"],
        rollback_order=order,
    )
    session.add(entry)
    session.flush()
    return entry


def rollout(session: Session, model_version: str, store: str | None, *, create_store: bool = False) -> Rollout:
    """Point ``store`` (None: every store) at a registered model; commits.

    Raises NotFound, Rejected (a store without devices, unless ``create_store``) or Conflict
    (an older version than the store runs: use ``rollback``).
    """
    model = session.get(Model, model_version)
    if model is None:
        raise NotFound(f"model {model_version!r} is not registered")
    _check_rollout(session, model, store, create_store=create_store)
    entry = _add_rollout(session, model_version, store)
    session.commit()
    return entry


def rollback_order_bytes(order: Mapping[str, Any]) -> bytes:
    """The bytes a rollback order's signature covers: the order without ``signature``, as
    ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` (factory/rollback.py signs them)."""
    unsigned = {key: value for key, value in order.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode("utf-8")


def rollback(
    session: Session,
    order: RollbackOrder,
    store: str | None,
    *,
    public_key_path: Path,
    max_future_skew_s: float,
) -> Rollout:
    """Roll ``store`` (None: every store) back as a signed order says; commits.

    The order must verify with central's trusted key (the factory's), go from the version the
    target runs now to an older registered one, not be issued in the future, and not have been
    used before. Devices of the target running ``from_version`` then get the order with their
    offer (``current_model``) and verify it themselves.
    Raises Rejected (bad signature, versions not older, future order), NotFound, Conflict
    (order already used, or the target does not run ``from_version``) or Unavailable (no key).
    """
    document = order.model_dump()
    try:
        key = load_public_key(public_key_path)
    except SignatureError as exc:
        raise Unavailable(f"central has no usable trusted public key: {exc}") from exc
    try:
        key.verify(base64.b64decode(order.signature, validate=True), rollback_order_bytes(document))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(
            f"rollback order {order.order_id}: the signature does not verify with central's trusted key"
        ) from None
    issued = datetime.fromisoformat(order.issued_at).astimezone(UTC).replace(tzinfo=None)
    if issued > utc_now() + timedelta(seconds=max_future_skew_s):
        raise Rejected(f"rollback order {order.order_id}: issued_at {order.issued_at} is in the future")
    models = {}
    for field in ("from_version", "to_version"):
        model = session.get(Model, getattr(order, field))
        if model is None:
            raise NotFound(f"rollback order {order.order_id}: {field} {getattr(order, field)!r} is not registered")
        models[field] = model
    if not models["to_version"].version < models["from_version"].version:
        raise Rejected(
            f"rollback order {order.order_id}: to_version {order.to_version} is not older than "
            f"from_version {order.from_version}"
        )
    if session.scalars(select(Rollout.id).where(Rollout.rollback_order_id == order.order_id)).first() is not None:
        raise Conflict(f"rollback order {order.order_id} was already used")
    current = _current_rollout(session, store)
    if current is None or current.model_version != order.from_version:
        running = "nothing" if current is None else current.model_version
        raise Conflict(
            f"rollback order {order.order_id} goes back from {order.from_version}, but {_target(store)} runs {running}"
        )
    entry = _add_rollout(session, order.to_version, store, document)
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
    entry = _current_rollout(session, store)
    return None if entry is None else session.get(Model, entry.model_version)


@dataclass(frozen=True)
class CurrentModel:
    """The model a store should run, the sha256 of each file a device downloads, and the signed
    rollback order for a device that runs the order's ``from_version``."""

    model: Model
    file_sha256: dict[str, str]
    rollback: dict[str, Any] | None = None


def current_model(session: Session, store: str, running: str | None = None) -> CurrentModel:
    """What a device of ``store`` that runs ``running`` should run. Raises NotFound when
    nothing is rolled out."""
    entry = _current_rollout(session, store)
    model = None if entry is None else session.get(Model, entry.model_version)
    if entry is None or model is None:
        raise NotFound(f"no model is rolled out to store {store!r}")
    query = select(ModelFile.name, ModelFile.sha256).where(
        ModelFile.model_version == model.model_version,
        ModelFile.name.in_(DEVICE_FILES + DEVICE_OPTIONAL_FILES),
    )
    order = entry.rollback_order
    if order is not None and (running is None or order.get("from_version") != running):
        order = None
    return CurrentModel(model, {name: sha for name, sha in session.execute(query)}, order)


def is_rolled_out(session: Session, model_version: str, store: str) -> bool:
    """Whether ``model_version`` was ever rolled out to ``store`` or to every store."""
    query = select(Rollout.id).where(
        Rollout.model_version == model_version, or_(Rollout.store == store, Rollout.store.is_(None))
    )
    return session.scalars(query.limit(1)).first() is not None


def get_model_file(session: Session, model_version: str, file_name: str, *, store: str | None = None) -> ModelFile:
    """One stored file of a model; with ``store``, only of a model rolled out to it. Raises NotFound."""
    if store is not None and not is_rolled_out(session, model_version, store):
        raise NotFound(f"model {model_version} is not rolled out to store {store!r}")
    entry = session.get(ModelFile, (model_version, file_name))
    if entry is None:
        raise NotFound(f"model {model_version} has no file {file_name!r}")
    return entry
