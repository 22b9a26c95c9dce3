"""Read a bounded, optionally gzip-compressed JSON request body."""

from __future__ import annotations

import json
import zlib
from typing import Any

from fastapi import HTTPException, Request, status

__all__ = ["read_json_body"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The parsed body; 413 past ``max_bytes`` (compressed or not), 415/400 when unreadable."""
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"request body exceeds {max_bytes} bytes (EDGESEG_MAX_BODY_BYTES)",
    )
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type {content_type!r} is not supported; send application/json",
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Encoding {encoding!r} is not supported; send identity or gzip",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, max_bytes + 1)
        except zlib.error as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid gzip: {exc}") from exc
        if len(raw) > max_bytes or inflater.unconsumed_tail:
            raise too_large
        if not inflater.eof:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="request body is not valid gzip: truncated")
        if inflater.unused_data:
            # A second member or trailing garbage would otherwise be dropped without a word.
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f"request body is not valid gzip: {len(inflater.unused_data)} bytes after the "
                "end of the gzip member (send exactly one member)",
            )
    if not raw:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="request body is empty")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 100k nested "[": a 400, not a 500 the client retries
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="request body is not valid JSON: nested too deeply"
        ) from exc
