"""Devices: registration and revocation (admin) and a device's model reports."""

from __future__ import annotations

from fastapi import APIRouter

from central.api.deps import AdminDep, OwnDevice, SessionDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, creates
from central.schemas import (
    DeviceCreate,
    DeviceCreated,
    DeviceEventCreate,
    DeviceEventPublic,
    DeviceOutcomesPublic,
    DevicePublic,
    ModelReportCreate,
    ModelReportPublic,
    OutcomesCreate,
)
from central.services import devices, outcomes

router = APIRouter(prefix="/devices", tags=["devices"])


@creates(router, "", DeviceCreated, ADMIN_ERRORS)
def create_device(body: DeviceCreate, session: SessionDep, _admin: AdminDep) -> DeviceCreated:
    """Register a device; the answer carries its token, which central never shows again."""
    device, token = devices.create_device(session, body.store)
    return DeviceCreated(id=device.id, store=device.store, token=token)


@router.get("", response_model=list[DevicePublic], responses=ADMIN_ERRORS)
def list_devices(session: SessionDep, _admin: AdminDep) -> list[DevicePublic]:
    return [DevicePublic.model_validate(d, from_attributes=True) for d in devices.list_devices(session)]


@router.post("/{device_id}/revoke", response_model=DevicePublic, responses=ADMIN_ERRORS)
def revoke_device(device_id: str, session: SessionDep, _admin: AdminDep) -> DevicePublic:
    return DevicePublic.model_validate(devices.revoke_device(session, device_id), from_attributes=True)


@router.get("/{device_id}/model-reports", response_model=list[ModelReportPublic], responses=ADMIN_ERRORS)
def list_model_reports(device_id: str, session: SessionDep, _admin: AdminDep) -> list[ModelReportPublic]:
    """What a device said about the models it was offered, oldest first."""
    reports = devices.list_model_reports(session, device_id)
    return [ModelReportPublic.model_validate(r, from_attributes=True) for r in reports]


@router.get("/{device_id}/events", response_model=list[DeviceEventPublic], responses=ADMIN_ERRORS)
def list_device_events(device_id: str, session: SessionDep, _admin: AdminDep) -> list[DeviceEventPublic]:
    """What a device said about itself (e.g. ``outbox_quarantined``), oldest first."""
    events = devices.list_device_events(session, device_id)
    return [DeviceEventPublic.model_validate(e, from_attributes=True) for e in events]


@creates(router, "/{device_id}/events", DeviceEventPublic, DEVICE_ERRORS)
def post_device_event(
    device_id: str, body: DeviceEventCreate, device: OwnDevice, session: SessionDep
) -> DeviceEventPublic:
    """A device reports an event about itself: ``{"kind": "outbox_quarantined", "epoch_old",
    "epoch_new", "at", "detail"?}`` when it moved a corrupt outbox aside and started a new epoch."""
    event = devices.record_device_event(session, device, body)
    return DeviceEventPublic.model_validate(event, from_attributes=True)


@creates(router, "/{device_id}/outcomes", DeviceOutcomesPublic, DEVICE_ERRORS)
def post_device_outcomes(
    device_id: str, body: OutcomesCreate, device: OwnDevice, session: SessionDep
) -> DeviceOutcomesPublic:
    """A till reports what its customers turned out to be, keyed by the same ``customer_ref`` its
    results carry (``edge-runtime outcome``): head office measures accuracy without holding any
    device's secret. The newest outcome per customer wins; resending is harmless."""
    return DeviceOutcomesPublic(stored=outcomes.record_outcomes(session, body.outcomes))


@creates(router, "/{device_id}/model-report", ModelReportPublic, DEVICE_ERRORS)
def post_model_report(
    device_id: str, body: ModelReportCreate, device: OwnDevice, session: SessionDep
) -> ModelReportPublic:
    """A device says it installed, refused or rolled back a model (with the reason)."""
    # ``device_id`` is declared for the OpenAPI document; OwnDevice has checked it is this token's.
    report = devices.record_model_report(session, device, body)
    return ModelReportPublic.model_validate(report, from_attributes=True)
