"""Bound every request body before authentication and parsing (issue 10, item 1).

An ASGI middleware, outermost in the app, so no route, dependency or parser runs on a body
larger than its limit:

* a declared ``Content-Length`` above the limit is answered 413 at once, without reading a byte
  and without calling the app (so no token check, no JSON parse, no database session);
* a body without one (chunked) is counted as the app reads it: past the limit, the read raises
  a 413 ``HTTPException``, which FastAPI answers like any other (the bytes read so far are at
  most one chunk past the limit);
* a ``Content-Length`` that is not a non-negative integer is a 400.

Limits are per route: ``POST /v1/models`` carries a base64 artifact (``max_artifact_bytes`` *
4/3 plus room for the JSON around it); everything else is ``max_body_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.core.config import Settings

__all__ = ["BodyLimitMiddleware", "BodyTooLarge", "body_limit_for"]

# Room for the JSON keys, rollout_to and padding around an upload's base64 files.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised by the counting ``receive`` once a streamed body passes its limit."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def body_limit_for(settings: Settings, api_prefix: str) -> Callable[[str, str], tuple[int, str]]:
    """``(method, path) -> (limit in bytes, the setting that sets it)`` for ``settings``."""
    upload_limit = settings.max_artifact_bytes * 4 // 3 + UPLOAD_OVERHEAD_BYTES
    upload_path = f"{api_prefix}/models"

    def limit(method: str, path: str) -> tuple[int, str]:
        if method == "POST" and path.rstrip("/") == upload_path:
            return upload_limit, "EDGESEG_MAX_ARTIFACT_BYTES, base64"
        return settings.max_body_bytes, "EDGESEG_MAX_BODY_BYTES"

    return limit


def _too_large_detail(limit: int, setting: str) -> str:
    return f"request body exceeds {limit} bytes ({setting})"


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse (413) any request body past its route's limit before the app sees it."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str, str], tuple[int, str]]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope["method"], scope["path"])
        detail = _too_large_detail(limit, setting)
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit():
                    await _answer(send, 400, f"Content-Length {text!r} is not a non-negative integer")
                    return
                declared = max(int(text), declared or 0)  # repeated: the largest counts
        if declared is not None and declared > limit:
            await _answer(send, 413, detail)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(detail)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Raised where no handler turned it into a response (e.g. outside a route).
            if started:
                raise
            await _answer(send, 413, detail)
