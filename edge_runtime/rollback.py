"""Model versions in order, and the signed rollback order that alone may take a device back.

A device installs an offered model only if its version is newer than the one it runs
(versions are UTC build times ``YYYYMMDDTHHMMSSZ``, so string order is time order). Going back
needs a **rollback order** signed with the factory's key (the key that signs manifests; the
device verifies with its trusted public key, as it verifies artifacts)::

    {"kind": "rollback", "from_version": "<name>/<v-running>", "to_version": "<name>/<v-older>",
     "issued_at": "<ISO UTC>", "order_id": "<uuid4 hex>", "signature": "<base64 Ed25519>"}

The signature covers :func:`canonical_order_bytes` (the order without ``signature``, JSON with
sorted keys and no spaces, UTF-8). A device applies an order once: :class:`RollbackLedger`
persists the ids applied and the newest ``issued_at``, so a replayed order, or an order older
than the last one applied, is refused (docs/DESIGN.md §5, issue 10 item 5).

Names and versions are also path parts on the device (``models/<name>/<version>``):
:func:`split_model_version` accepts only ``[A-Za-z0-9._-]+`` that is not ``.`` or ``..``, and
is called before any file operation (issue 10 item 6).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.durable import write_durably
from edge_runtime.exceptions import ModelLoadError, SignatureError
from edge_runtime.signing import key_id, load_public_key

__all__ = [
    "ORDERED_VERSION",
    "RollbackLedger",
    "RollbackOrder",
    "RollbackRefused",
    "UnsafeModelVersion",
    "canonical_order_bytes",
    "is_newer",
    "split_model_version",
    "verify_rollback_order",
]

SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")
ORDERED_VERSION = re.compile(r"\d{8}T\d{6}Z")
_ORDER_ID = re.compile(r"[0-9a-f]{32}")
_ORDER_FIELDS = frozenset({"kind", "from_version", "to_version", "issued_at", "order_id", "signature"})


class UnsafeModelVersion(ModelLoadError):
    """A model name or version that is not a safe single path part (refused before any file
    operation: ``x/..`` once emptied a device's whole models folder)."""


class RollbackRefused(ModelLoadError):
    """An offer to go back to an older version without a valid, unused rollback order."""


def split_model_version(model_version: object) -> tuple[str, str]:
    """``"<name>/<version>"`` -> (name, version), each ``[A-Za-z0-9._-]+`` and not ``.``/``..``."""
    if not isinstance(model_version, str):
        raise UnsafeModelVersion(f"model_version must be a string '<name>/<version>', got {model_version!r}")
    name, slash, version = model_version.partition("/")
    for label, part in (("name", name), ("version", version)):
        if not slash or not SAFE_PART.fullmatch(part) or part in (".", ".."):
            raise UnsafeModelVersion(
                f"model_version {model_version!r}: the {label} {part!r} must match [A-Za-z0-9._-]+ "
                "and not be '.' or '..'"
            )
    return name, version


def is_newer(offered: str, running: str | None) -> bool:
    """Whether version ``offered`` (the part after ``/`` or a bare version) is newer than
    ``running``. Both must be UTC build times; a running version that is not one (a legacy
    folder) is older than any that is; an offered one that is not one is never newer."""
    offered_version = offered.rpartition("/")[2]
    if not ORDERED_VERSION.fullmatch(offered_version):
        return False
    if running is None:
        return True
    running_version = running.rpartition("/")[2]
    if not ORDERED_VERSION.fullmatch(running_version):
        return True
    return offered_version > running_version


def canonical_order_bytes(order: Mapping[str, Any]) -> bytes:
    """The signed bytes of a rollback order: everything but ``signature``, sorted, compact."""
    unsigned = {k: v for k, v in order.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class RollbackOrder:
    """A verified rollback order (see the module docstring)."""

    from_version: str
    to_version: str
    issued_at: datetime
    order_id: str

    def to_json(self) -> dict[str, str]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "issued_at": self.issued_at.isoformat(),
            "order_id": self.order_id,
        }


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise RollbackRefused(f"rollback order: issued_at must be an ISO UTC time, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RollbackRefused(f"rollback order: issued_at {value!r} is not an ISO time") from exc
    if moment.tzinfo is None:
        raise RollbackRefused(f"rollback order: issued_at {value!r} has no UTC offset")
    return moment.astimezone(UTC)


def verify_rollback_order(order: object, public_key: str | Path | bytes | Ed25519PublicKey) -> RollbackOrder:
    """Check shape and signature of an order; RollbackRefused or SignatureError otherwise."""
    if not isinstance(order, Mapping):
        raise RollbackRefused(f"rollback order must be a JSON object, got {type(order).__name__}")
    if set(order) != _ORDER_FIELDS:
        raise RollbackRefused(
            f"rollback order must have exactly the fields {sorted(_ORDER_FIELDS)}, got {sorted(map(str, order))}"
        )
    if order["kind"] != "rollback":
        raise RollbackRefused(f"rollback order: kind must be 'rollback', got {order['kind']!r}")
    for name in ("from_version", "to_version"):
        split_model_version(order[name])
    order_id = order["order_id"]
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise RollbackRefused(f"rollback order: order_id must be 32 lowercase hex characters, got {order_id!r}")
    issued_at = _parse_time(order["issued_at"])
    key = load_public_key(public_key)
    try:
        signature = base64.b64decode(str(order["signature"]), validate=True)
        key.verify(signature, canonical_order_bytes(order))
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise SignatureError(f"rollback order {order_id} is not signed by the trusted key {key_id(key)}") from exc
    return RollbackOrder(str(order["from_version"]), str(order["to_version"]), issued_at, order_id)


class RollbackLedger:
    """The rollback orders this device applied, in ``<models_dir>/rollback-orders.json``.

    Written whole (temporary file, fsync, rename, fsync of the folder), so a crash leaves the
    old ledger or the new one; an unreadable ledger refuses every order rather than forgetting.
    """

    FILE_NAME = "rollback-orders.json"

    def __init__(self, models_dir: str | Path) -> None:
        self.path = Path(models_dir) / self.FILE_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"applied": [], "last_issued_at": None}
        except (OSError, ValueError) as exc:
            raise RollbackRefused(f"cannot read the rollback ledger {str(self.path)!r}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("applied"), list):
            raise RollbackRefused(f"the rollback ledger {str(self.path)!r} is malformed")
        return data

    def check(self, order: RollbackOrder, *, running: str | None, offered: str) -> None:
        """RollbackRefused unless the order takes ``running`` to ``offered`` and is new."""
        if order.to_version != offered:
            raise RollbackRefused(
                f"rollback order {order.order_id} goes to {order.to_version}, but central offered {offered}"
            )
        if order.from_version != running:
            raise RollbackRefused(
                f"rollback order {order.order_id} is from {order.from_version}, but this device runs {running}"
            )
        ledger = self._read()
        if order.order_id in ledger["applied"]:
            raise RollbackRefused(f"rollback order {order.order_id} was applied before: a replay is refused")
        last = ledger.get("last_issued_at")
        if last is not None and order.issued_at < _parse_time(last):
            raise RollbackRefused(
                f"rollback order {order.order_id} was issued at {order.issued_at.isoformat()}, before the last "
                f"order applied ({last}): an old order is refused"
            )

    def record(self, order: RollbackOrder) -> None:
        """Persist that ``order`` was applied (after the rollback took effect)."""
        ledger = self._read()
        applied = [*ledger["applied"], order.order_id]
        last = ledger.get("last_issued_at")
        newest = order.issued_at if last is None else max(order.issued_at, _parse_time(last))
        data = {"applied": applied, "last_issued_at": newest.isoformat()}
        write_durably(self.path, json.dumps(data, sort_keys=True).encode("utf-8"))
