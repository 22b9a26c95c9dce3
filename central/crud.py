"""Device bookkeeping shared by the admin routes and ``edgeseg-central device …``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.core.security import hash_token, new_device_id, new_token
from central.models import Device, utc_now
from central.schemas import DeviceCreated, DevicePublic

__all__ = ["create_device", "device_public", "list_devices", "revoke_device"]


def create_device(session: Session, store: str) -> DeviceCreated:
    """Register a device of ``store``; the token is returned once and stored only hashed."""
    token = new_token()
    device = Device(
        id=new_device_id(),
        store=store,
        token_hash=hash_token(token),
        created_at=utc_now(),
        acked_through=0,
        results_count=0,
    )
    session.add(device)
    session.commit()
    return DeviceCreated(id=device.id, store=device.store, token=token)


def revoke_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise LookupError(f"device {device_id!r} is not registered")
    if device.revoked_at is None:
        device.revoked_at = utc_now()
        session.commit()
    return device


def device_public(device: Device) -> DevicePublic:
    return DevicePublic(
        id=device.id,
        store=device.store,
        created_at=device.created_at,
        revoked_at=device.revoked_at,
        last_seen_at=device.last_seen_at,
        acked_through=device.acked_through,
        results=device.results_count,
        backlog=device.backlog,
        model_version=device.model_version,
    )


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.store, Device.id)))
