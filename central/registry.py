"""Register a signed artifact: verify it exactly as a device would, then store it and roll out.

Used by ``POST /v1/models`` (upload) and ``edgeseg-central model publish`` (a local folder).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.models import Model, ModelFile, Rollout, utc_now
from edge_runtime.exceptions import ModelLoadError
from edge_runtime.signing import (
    MANIFEST_NAME,
    MODEL_NAME,
    SIGNATURE_NAME,
    key_id,
    load_public_key,
    verify_artifact,
)

__all__ = [
    "DEVICE_FILES",
    "OPTIONAL_FILES",
    "ArtifactRejected",
    "register_artifact",
    "register_artifact_dir",
    "rollout",
]

DEVICE_FILES = (MODEL_NAME, MANIFEST_NAME, SIGNATURE_NAME)
OPTIONAL_FILES = ("card.md", "card.html")


class ArtifactRejected(ValueError):
    """The artifact failed verification or does not describe a usable classifier."""


def _check_manifest(manifest: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    model_version = manifest.get("model_version")
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(model_version, str) or model_version != f"{name}/{version}":
        raise ArtifactRejected(
            f"manifest model_version {model_version!r} is not '<name>/<version>' ({name!r}/{version!r})"
        )
    target = manifest.get("target")
    classes = target.get("classes") if isinstance(target, dict) else None
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ArtifactRejected(f"manifest target.classes must list at least two distinct class names (got {classes!r})")
    reference = manifest.get("reference", {})
    if not isinstance(reference, dict):
        raise ArtifactRejected("manifest reference must be an object of per-input statistics")
    return model_version, str(name), str(version), classes


def register_artifact(
    session: Session,
    files: dict[str, bytes],
    public_key: Any,
    *,
    rollout_to: str | None = "all",
) -> Model:
    """Verify ``files`` (name -> bytes) with ``public_key`` and store them; commit is the caller's.

    ``rollout_to``: "all" (every store), "none" (register only) or a store name.
    Raises ArtifactRejected (or ModelLoadError subclasses wrapped into it).
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
    model_version, name, version, classes = _check_manifest(manifest)
    existing = session.get(Model, model_version)
    if existing is not None:
        if existing.onnx_sha256 != manifest.get("onnx_sha256"):
            raise ArtifactRejected(f"{model_version} is already registered with a different model.onnx")
        model = existing
    else:
        model = Model(
            model_version=model_version,
            name=name,
            version=version,
            classes=classes,
            reference=manifest.get("reference") or {},
            manifest=manifest,
            onnx_sha256=str(manifest.get("onnx_sha256")),
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
        rollout(session, model_version, None if rollout_to == "all" else rollout_to)
    session.flush()
    return model


def register_artifact_dir(
    session: Session, artifact_dir: str | Path, public_key: Any, *, rollout_to: str | None = "all"
) -> Model:
    folder = Path(artifact_dir)
    files = {}
    for name in DEVICE_FILES + OPTIONAL_FILES:
        path = folder / name
        if path.is_file():
            files[name] = path.read_bytes()
    return register_artifact(session, files, public_key, rollout_to=rollout_to)


def rollout(session: Session, model_version: str, store: str | None) -> Rollout:
    if session.get(Model, model_version) is None:
        raise LookupError(f"model {model_version!r} is not registered")
    entry = Rollout(model_version=model_version, store=store, created_at=utc_now())
    session.add(entry)
    session.flush()
    return entry


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


def reference_vectors(reference: dict[str, Any]) -> dict[str, list[float]]:
    """The expected proportion vector per input, in the order devices send histogram counts.

    Numbers: k bins then missing (docs/ARTIFACT.md). Strings: categories, other, missing; a
    manifest that keeps ``other``/``missing`` as keys beside ``proportions`` is folded in.
    """
    vectors: dict[str, list[float]] = {}
    for name, spec in reference.items():
        if not isinstance(spec, dict):
            continue
        proportions = [float(p) for p in spec.get("proportions", [])]
        if spec.get("type") == "string":
            categories = spec.get("categories", [])
            if len(proportions) == len(categories):
                proportions = proportions + [
                    float(spec.get("other", 0.0)),
                    float(spec.get("missing", 0.0)),
                ]
        vectors[name] = [p if math.isfinite(p) else 0.0 for p in proportions]
    return vectors
