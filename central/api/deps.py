"""``Annotated`` dependency aliases the routes declare (full-stack-fastapi-template style)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from central.api.body import read_json_body
from central.core.config import Settings
from central.core.db import Database
from central.core.security import admin_token_matches
from central.models import Device
from central.services import devices

__all__ = [
    "AdminDep",
    "CurrentDevice",
    "DashboardAdminDep",
    "DatabaseDep",
    "JsonBody",
    "OwnDevice",
    "SessionDep",
    "SettingsDep",
]

_bearer = HTTPBearer(auto_error=False, description="a device token, or the admin token")

MISSING_TOKEN = "missing bearer token: send 'Authorization: Bearer <token>'"


def _unauthorized(detail: str, scheme: str = "Bearer") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": scheme})


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    with db.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_current_device(session: SessionDep, credentials: BearerDep) -> Device:
    """The device whose bearer token this is; 401 when missing, unknown or revoked."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized(MISSING_TOKEN)
    device = devices.device_for_token(session, credentials.credentials)
    if device is None:
        raise _unauthorized("invalid device token")
    if device.revoked_at is not None:
        raise _unauthorized(f"device {device.id} is revoked")
    devices.mark_seen(session, device)
    return device


CurrentDevice = Annotated[Device, Depends(get_current_device)]


async def get_json_body(request: Request, settings: SettingsDep) -> Any:
    """The request's JSON body, read once: bounded by EDGESEG_MAX_BODY_BYTES, gzip allowed.

    For routes that read their body themselves (``POST /v1/results:batch``); kept on
    ``request.state`` so ``OwnDevice`` and the route share one read.
    """
    if not hasattr(request.state, "json_body"):
        request.state.json_body = await read_json_body(request, settings.max_body_bytes)
    return request.state.json_body


JsonBody = Annotated[Any, Depends(get_json_body)]


async def get_own_device(request: Request, device: CurrentDevice, settings: SettingsDep) -> Device:
    """The token's device, refused (403) when the request speaks for another device.

    A device route names the device it speaks for in its path (``/devices/{device_id}/…``) or
    as the ``device_id`` of its JSON body. A claim that is absent or not a string is left to
    body validation (422). Ownership is checked before the rest of the body is validated.
    """
    claimed = request.path_params.get("device_id")
    if claimed is None:
        body = await get_json_body(request, settings)
        claimed = body.get("device_id") if isinstance(body, dict) else None
    if isinstance(claimed, str) and claimed != device.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this token belongs to device {device.id!r}, not {claimed!r}",
        )
    return device


OwnDevice = Annotated[Device, Depends(get_own_device)]


def require_admin(settings: SettingsDep, credentials: BearerDep) -> None:
    if credentials is None or not credentials.credentials:
        raise _unauthorized(MISSING_TOKEN)
    if not admin_token_matches(credentials.credentials, settings.admin_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this route needs the admin token")


AdminDep = Annotated[None, Depends(require_admin)]


def require_dashboard_admin(request: Request, settings: SettingsDep) -> None:
    """The admin token as a bearer token, or as the password of HTTP Basic (for browsers)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        given = decoded.partition(":")[2]
    if not given:
        raise _unauthorized("the dashboard needs the admin token", 'Basic realm="edgeseg"')
    if not admin_token_matches(given, settings.admin_token):
        raise _unauthorized("invalid admin token", 'Basic realm="edgeseg"')


DashboardAdminDep = Annotated[None, Depends(require_dashboard_admin)]
