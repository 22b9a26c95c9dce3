"""Devices: registration and revocation (admin) and a device's model reports."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from central import crud
from central.api.deps import AdminDep, CurrentDevice, SessionDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS
from central.models import ModelReport, utc_now
from central.schemas import (
    DeviceCreate,
    DeviceCreated,
    DevicePublic,
    ModelReportCreate,
    ModelReportPublic,
)

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("", response_model=DeviceCreated, status_code=status.HTTP_201_CREATED, responses=ADMIN_ERRORS)
def create_device(body: DeviceCreate, session: SessionDep, _admin: AdminDep) -> DeviceCreated:
    """Register a device; the answer carries its token, which central never shows again."""
    return crud.create_device(session, body.store)


@router.get("", response_model=list[DevicePublic], responses=ADMIN_ERRORS)
def list_devices(session: SessionDep, _admin: AdminDep) -> list[DevicePublic]:
    return [crud.device_public(d) for d in crud.list_devices(session)]


@router.post("/{device_id}/revoke", response_model=DevicePublic, responses=ADMIN_ERRORS)
def revoke_device(device_id: str, session: SessionDep, _admin: AdminDep) -> DevicePublic:
    try:
        device = crud.revoke_device(session, device_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return crud.device_public(device)


@router.get("/{device_id}/model-reports", response_model=list[ModelReportPublic], responses=ADMIN_ERRORS)
def list_model_reports(device_id: str, session: SessionDep, _admin: AdminDep) -> list[ModelReportPublic]:
    """What a device said about the models it was offered, oldest first."""
    reports = session.scalars(select(ModelReport).where(ModelReport.device_id == device_id).order_by(ModelReport.id))
    return [_report_public(r) for r in reports]


def _report_public(report: ModelReport) -> ModelReportPublic:
    return ModelReportPublic(
        device_id=report.device_id,
        model_version=report.model_version,
        status=report.status,
        reason=report.reason,
        created_at=report.created_at,
    )


@router.post(
    "/{device_id}/model-report",
    response_model=ModelReportPublic,
    status_code=status.HTTP_201_CREATED,
    responses=DEVICE_ERRORS,
)
def post_model_report(
    device_id: str, body: ModelReportCreate, device: CurrentDevice, session: SessionDep
) -> ModelReportPublic:
    """A device says it installed, refused or rolled back a model (with the reason)."""
    if device_id != device.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this token belongs to device {device.id!r}, not {device_id!r}",
        )
    report = ModelReport(
        device_id=device.id,
        model_version=body.model_version,
        status=body.status,
        reason=body.reason,
        created_at=utc_now(),
    )
    session.add(report)
    if body.status == "installed":
        device.model_version = body.model_version
    session.commit()
    return _report_public(report)
