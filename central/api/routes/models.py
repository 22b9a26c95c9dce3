"""Models: register signed artifacts (admin), roll them out, and serve them to devices.

Upload format (chosen over multipart to need no extra parser): ``POST /v1/models`` with JSON
``{"files": {"model.onnx": <base64>, "manifest.json": <base64>, "manifest.sig": <base64>,
"card.md": <base64, optional>}, "rollout_to": "all" | "none" | "<store>"}``. Central verifies it
with its trusted key (``EDGESEG_PUBLIC_KEY_PATH``) exactly as a device does before keeping it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from central.api.deps import AdminDep, CurrentDevice, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, NO_TRUSTED_KEY, creates, error
from central.schemas import (
    CurrentModelPublic,
    ModelCreate,
    ModelPublic,
    RollbackCreate,
    RolloutCreate,
    RolloutPublic,
)
from central.services import models

router = APIRouter(tags=["models"])


_OLDER = error("the rollout would move a store back to an older version: that needs a rollback order")


@creates(
    router, "/models", ModelPublic, {**ADMIN_ERRORS, **NO_TRUSTED_KEY, 409: _OLDER, 413: error("artifact too large")}
)
def upload_model(body: ModelCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> ModelPublic:
    """Verify and register an artifact, then roll it out (``rollout_to``)."""
    model = models.register_upload(
        session,
        body.files,
        public_key_path=settings.public_key_path,
        max_bytes=settings.max_artifact_bytes,
        rollout_to=body.rollout_to,
        create_store=body.create_store,
    )
    return ModelPublic.model_validate(model, from_attributes=True)


@router.get("/models", response_model=list[ModelPublic], responses=ADMIN_ERRORS)
def list_models(session: SessionDep, _admin: AdminDep) -> list[ModelPublic]:
    return [ModelPublic.model_validate(m, from_attributes=True) for m in models.list_models(session)]


@creates(router, "/rollouts", RolloutPublic, {**ADMIN_ERRORS, 409: _OLDER})
def create_rollout(body: RolloutCreate, session: SessionDep, _admin: AdminDep) -> RolloutPublic:
    """Point a store (or, with ``store: null``, every store) at a registered model, never an
    older one than it runs (``POST /v1/rollbacks``); a store without devices needs ``create_store``."""
    entry = models.rollout(session, body.model_version, body.store, create_store=body.create_store)
    return RolloutPublic.model_validate(entry, from_attributes=True)


_ORDER_CONFLICT = error("the order was used before, or the store does not run its from_version")


@creates(router, "/rollbacks", RolloutPublic, {**ADMIN_ERRORS, **NO_TRUSTED_KEY, 409: _ORDER_CONFLICT})
def create_rollback(
    body: RollbackCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep
) -> RolloutPublic:
    """Roll a store (or every store) back to an older version, as a signed rollback order
    (``factory rollback-order``) says; devices running its from_version receive the order."""
    entry = models.rollback(
        session,
        body.order,
        body.store,
        public_key_path=settings.public_key_path,
        max_future_skew_s=settings.max_future_skew_s,
    )
    return RolloutPublic.model_validate(entry, from_attributes=True)


@router.get(
    "/models/current",
    response_model=CurrentModelPublic,
    responses={**DEVICE_ERRORS, 404: error("nothing rolled out to this device's store")},
)
def current_model(request: Request, device: CurrentDevice, session: SessionDep) -> CurrentModelPublic:
    """Which model this device should run, and where to download its files; with the signed
    rollback order when the store was rolled back from the version this device runs."""
    current = models.current_model(session, device.store, device.model_version)
    model = current.model
    files = {
        name: str(request.url_for("download_model_file", name=model.name, version=model.version, file_name=name))
        for name in (*models.DEVICE_FILES, *models.DEVICE_OPTIONAL_FILES)
        if name in current.file_sha256
    }
    return CurrentModelPublic(
        model_version=model.model_version,
        files=files,
        sha256=model.onnx_sha256,
        file_sha256=current.file_sha256,
        rollback=current.rollback,
    )


@router.get(
    "/models/{name}/{version}/files/{file_name}",
    name="download_model_file",
    response_class=Response,
    responses={
        **DEVICE_ERRORS,
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
        404: error("no such model or file, or not rolled out to this device's store"),
    },
)
def download_model_file(
    name: str, version: str, file_name: str, device: CurrentDevice, session: SessionDep
) -> Response:
    """A file of a model rolled out to this device's store (or to every store)."""
    model_version = models.model_version_of(name, version)
    entry = models.get_model_file(session, model_version, file_name, store=device.store)
    media = "application/json" if file_name.endswith((".json", ".sig")) else None
    return Response(
        entry.content,
        media_type=media or "application/octet-stream",
        headers={"X-Content-SHA256": entry.sha256},
    )
