"""Turn validation errors into one readable ``detail`` string, the same on every route."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from central.services.errors import ServiceError

__all__ = [
    "DATABASE_RETRY_AFTER_S",
    "database_unavailable_handler",
    "format_errors",
    "format_loc",
    "request_validation_handler",
    "service_error_handler",
]

# What a client is told to wait when the database cannot be reached (restart, failover, lock).
DATABASE_RETRY_AFTER_S = 2

logger = logging.getLogger("central")

_MAX_ERRORS = 3
_MAX_INPUT_REPR = 60


def format_loc(loc: Sequence[Any]) -> str:
    """``("body", "results", 0, "seq")`` -> ``results[0].seq``."""
    text = ""
    for part in loc:
        if part == "body" and not text:
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 1] + "…"


def format_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's errors as ``loc: msg (got input)``; the first three, then how many more."""
    errors = list(errors)
    parts = []
    for error in errors[:_MAX_ERRORS]:
        message = f"{format_loc(error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        if error.get("type") not in ("missing", "json_invalid") and "input" in error:
            if not isinstance(error["input"], dict | list):
                message += f" (got {_describe_input(error['input'])})"
        parts.append(message)
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more errors")
    return "; ".join(parts)


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": format_errors(exc.errors())})


async def service_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """A service refused the request: its status and ``detail`` (``central/services/errors.py``)."""
    assert isinstance(exc, ServiceError)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})


async def database_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """The database is down or locked: a 503 the sync client retries, never a bare 500."""
    logger.warning("database unavailable: %s", exc)
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; retry later"},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )
