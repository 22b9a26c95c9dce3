"""The documented error responses, so the OpenAPI spec lists every status a route can send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from central.schemas import ErrorPublic

__all__ = ["ADMIN_ERRORS", "DEVICE_ERRORS", "NO_TRUSTED_KEY", "creates", "error"]


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


DEVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("the body cannot be read (not UTF-8, not gzip, not JSON, empty)"),
    401: error("missing, unknown or revoked device token"),
    403: error("the token belongs to another device"),
    413: error("batch or body too large"),
    415: error("unsupported Content-Type or Content-Encoding"),
    422: error("a field breaks the contract; nothing was stored"),
    503: error("the database is unavailable; retry after Retry-After seconds"),
}

# A route that verifies signatures with central's trusted key (uploads, rollback orders).
NO_TRUSTED_KEY: dict[int | str, dict[str, Any]] = {503: error("no trusted key, or the database is unavailable")}


def creates(
    router: APIRouter, path: str, public: type[BaseModel], errors: dict[int | str, dict[str, Any]]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``router.post`` for a route that stores something: 201 with its ``public`` shape."""
    return router.post(path, response_model=public, status_code=status.HTTP_201_CREATED, responses=errors)


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("the body cannot be read"),
    401: error("missing bearer token"),
    403: error("not the admin token"),
    404: error("no such resource"),
    413: error("request body too large"),
    422: error("invalid request"),
}
