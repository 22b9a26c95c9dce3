"""Models: register signed artifacts (admin), roll them out, and serve them to devices.

Upload format (chosen over multipart to need no extra parser): ``POST /v1/models`` with JSON
``{"files": {"model.onnx": <base64>, "manifest.json": <base64>, "manifest.sig": <base64>,
"card.md": <base64, optional>}, "rollout_to": "all" | "none" | "<store>"}``. Central verifies it
with its trusted key (``EDGESEG_PUBLIC_KEY_PATH``) exactly as a device does before keeping it.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.api.deps import AdminDep, CurrentDevice, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, error
from central.models import Model, ModelFile, Rollout
from central.registry import (
    DEVICE_FILES,
    ArtifactRejected,
    current_model_for_store,
    register_artifact,
    rollout,
)
from central.schemas import (
    CurrentModelPublic,
    ModelCreate,
    ModelPublic,
    RolloutCreate,
    RolloutPublic,
)
from edge_runtime.exceptions import SignatureError
from edge_runtime.signing import load_public_key

router = APIRouter(tags=["models"])


def _model_public(session: Session, model: Model) -> ModelPublic:
    files = session.scalars(select(ModelFile.name).where(ModelFile.model_version == model.model_version)).all()
    rollouts = session.scalars(
        select(Rollout).where(Rollout.model_version == model.model_version).order_by(Rollout.id)
    ).all()
    return ModelPublic(
        model_version=model.model_version,
        name=model.name,
        version=model.version,
        classes=model.classes,
        onnx_sha256=model.onnx_sha256,
        key_id=model.key_id,
        registered_at=model.registered_at,
        files=sorted(files),
        rollouts=[
            RolloutPublic(model_version=r.model_version, store=r.store, created_at=r.created_at) for r in rollouts
        ],
    )


@router.post(
    "/models",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        **ADMIN_ERRORS,
        413: error("artifact too large"),
        503: error("no trusted key, or the database is unavailable"),
    },
)
def upload_model(body: ModelCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> ModelPublic:
    """Verify and register an artifact, then roll it out (``rollout_to``)."""
    files: dict[str, bytes] = {}
    total = 0
    for name, encoded in body.files.items():
        try:
            files[name] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"files.{name}: not base64 ({exc})"
            ) from exc
        total += len(files[name])
    if total > settings.max_artifact_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"artifact is {total} bytes; the limit is {settings.max_artifact_bytes} "
            "(EDGESEG_MAX_ARTIFACT_BYTES)",
        )
    try:
        key = load_public_key(settings.public_key_path)
    except SignatureError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"central has no usable trusted public key: {exc}",
        ) from exc
    try:
        model = register_artifact(session, files, key, rollout_to=body.rollout_to)
    except ArtifactRejected as exc:
        session.rollback()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    session.commit()
    return _model_public(session, model)


@router.get("/models", response_model=list[ModelPublic], responses=ADMIN_ERRORS)
def list_models(session: SessionDep, _admin: AdminDep) -> list[ModelPublic]:
    models = session.scalars(select(Model).order_by(Model.registered_at, Model.model_version))
    return [_model_public(session, m) for m in models]


@router.post(
    "/rollouts",
    response_model=RolloutPublic,
    status_code=status.HTTP_201_CREATED,
    responses=ADMIN_ERRORS,
)
def create_rollout(body: RolloutCreate, session: SessionDep, _admin: AdminDep) -> RolloutPublic:
    """Point a store (or, with ``store: null``, every store) at a registered model."""
    try:
        entry = rollout(session, body.model_version, body.store)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc).strip("'\"")) from exc
    session.commit()
    return RolloutPublic(model_version=entry.model_version, store=entry.store, created_at=entry.created_at)


@router.get(
    "/models/current",
    response_model=CurrentModelPublic,
    responses={**DEVICE_ERRORS, 404: error("nothing rolled out to this device's store")},
)
def current_model(request: Request, device: CurrentDevice, session: SessionDep) -> CurrentModelPublic:
    """Which model this device should run, and where to download its files."""
    model = current_model_for_store(session, device.store)
    if model is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model is rolled out to store {device.store!r}")
    hashes = dict(
        session.execute(
            select(ModelFile.name, ModelFile.sha256).where(
                ModelFile.model_version == model.model_version, ModelFile.name.in_(DEVICE_FILES)
            )
        ).all()
    )
    files = {
        name: str(request.url_for("download_model_file", name=model.name, version=model.version, file_name=name))
        for name in DEVICE_FILES
    }
    return CurrentModelPublic(
        model_version=model.model_version, files=files, sha256=model.onnx_sha256, file_sha256=hashes
    )


@router.get(
    "/models/{name}/{version}/files/{file_name}",
    name="download_model_file",
    response_class=Response,
    responses={
        **DEVICE_ERRORS,
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
        404: error("no such model or file"),
    },
)
def download_model_file(
    name: str, version: str, file_name: str, _device: CurrentDevice, session: SessionDep
) -> Response:
    entry = session.get(ModelFile, (f"{name}/{version}", file_name))
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {name}/{version} has no file {file_name!r}")
    media = "application/json" if file_name.endswith((".json", ".sig")) else None
    return Response(
        entry.content,
        media_type=media or "application/octet-stream",
        headers={"X-Content-SHA256": entry.sha256},
    )
