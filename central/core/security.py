"""Device tokens (random, shown once, stored as sha256) and the admin-token check."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["admin_token_matches", "hash_token", "new_device_id", "new_token"]

TOKEN_BYTES = 32


def new_token() -> str:
    """A device's bearer token: 256 random bits, URL-safe. Only its hash is stored."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_device_id() -> str:
    return f"d-{secrets.token_hex(6)}"


def hash_token(token: str) -> str:
    # A plain sha256 is enough: the token is 256 random bits, not a guessable password.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def admin_token_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
