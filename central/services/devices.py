"""Devices: registration and revocation (admin routes and ``edgeseg-central device``), and what
each device reports about the models it was offered."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.core.security import hash_token, new_device_id, new_token
from central.models import Device, DeviceEvent, ModelReport, utc_now
from central.schemas import DeviceEventCreate, ModelReportCreate
from central.services.errors import Conflict, NotFound, Rejected

__all__ = [
    "create_device",
    "device_for_token",
    "list_device_events",
    "recent_device_events",
    "list_devices",
    "list_model_reports",
    "mark_seen",
    "record_device_event",
    "record_model_report",
    "revoke_device",
]

# A device id chosen by the operator (the edge runtime's `outbox rehome` checks the same rule):
# safe in URL paths and file names.
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# last_seen_at is written at most this often by read-only device requests.
_LAST_SEEN_RESOLUTION = timedelta(seconds=10)


def create_device(session: Session, store: str, device_id: str | None = None) -> tuple[Device, str]:
    """Register a device of ``store``; returns it with its token, which is stored only hashed.

    The caller shows the token once: central cannot show it again. ``device_id``: the id the
    device already uses (its outbox's, e.g. the host name of a till that classified before it
    was registered); else a new ``d-…`` id. Refused (Conflict) when that id is registered.
    """
    if device_id is not None:
        if not DEVICE_ID_PATTERN.fullmatch(device_id):
            raise Rejected(f"device id {device_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if session.get(Device, device_id) is not None:
            raise Conflict(f"device {device_id!r} is already registered (revoke it or choose another id)")
    token = new_token()
    device = Device(
        id=device_id or new_device_id(),
        store=store,
        token_hash=hash_token(token),
        created_at=utc_now(),
        acked_through=0,
        results_count=0,
    )
    session.add(device)
    session.commit()
    return device, token


def revoke_device(session: Session, device_id: str) -> Device:
    """Revoke the device's token (idempotent: a second call keeps the first time)."""
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} is not registered")
    if device.revoked_at is None:
        device.revoked_at = utc_now()
        session.commit()
    return device


def device_for_token(session: Session, token: str) -> Device | None:
    """The device holding ``token`` (revoked or not), or None."""
    return session.scalars(select(Device).where(Device.token_hash == hash_token(token))).first()


def mark_seen(session: Session, device: Device) -> None:
    """Record that ``device`` just called, at most every few seconds; commits.

    The commit also ends the transaction the token lookup opened: on SQLite every transaction
    holds the write lock (BEGIN IMMEDIATE), and the route may still be reading the request body.
    """
    now = utc_now()
    if device.last_seen_at is None or now - device.last_seen_at > _LAST_SEEN_RESOLUTION:
        device.last_seen_at = now
    session.commit()


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.store, Device.id)))


def record_model_report(session: Session, device: Device, report: ModelReportCreate) -> ModelReport:
    """Keep what ``device`` said about a model; "installed" also moves its current version."""
    row = ModelReport(device_id=device.id, created_at=utc_now(), **report.model_dump())
    session.add(row)
    if report.status == "installed":
        device.model_version = report.model_version
    session.commit()
    return row


def record_device_event(session: Session, device: Device, event: DeviceEventCreate) -> DeviceEvent:
    """Keep what ``device`` says about itself (e.g. a corrupt outbox moved aside); commits."""
    fields = event.model_dump()
    fields["at"] = event.at.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC, like every time
    # A device resends an event whose answer it lost (the fault soak saw it): the same event
    # again is the stored one, not a second report of the same quarantine.
    same = select(DeviceEvent).where(
        DeviceEvent.device_id == device.id, *(getattr(DeviceEvent, key) == value for key, value in fields.items())
    )
    existing = session.scalars(same.limit(1)).first()
    if existing is not None:
        return existing
    row = DeviceEvent(device_id=device.id, created_at=utc_now(), **fields)
    session.add(row)
    session.commit()
    return row


def list_device_events(session: Session, device_id: str) -> list[DeviceEvent]:
    """A device's events, oldest first."""
    return list(session.scalars(select(DeviceEvent).where(DeviceEvent.device_id == device_id).order_by(DeviceEvent.id)))


def recent_device_events(session: Session, limit: int = 20) -> list[DeviceEvent]:
    """The newest events of every device, newest first (the dashboard's alerts)."""
    return list(session.scalars(select(DeviceEvent).order_by(DeviceEvent.id.desc()).limit(limit)))


def list_model_reports(session: Session, device_id: str) -> list[ModelReport]:
    """A device's reports, oldest first."""
    query = select(ModelReport).where(ModelReport.device_id == device_id).order_by(ModelReport.id)
    return list(session.scalars(query))
