"""Sign a rollback order with the factory's key (docs/DESIGN.md §5, issue 10).

Devices install only versions newer than the one they run; going back needs an order signed
with the key that signs manifests, so neither central alone nor a replayed offer can move a
fleet back to a model with a known defect:

    {"kind": "rollback", "from_version": "<name>/<v>", "to_version": "<name>/<older v>",
     "issued_at": "<ISO UTC>", "order_id": "<uuid4 hex>", "signature": "<base64 Ed25519>"}

The signature covers ``json.dumps(order without signature, sort_keys=True,
separators=(",", ":")).encode()``. Head office uploads the order to central
(``POST /v1/rollbacks`` or ``edgeseg-central model rollback ORDER_JSON``), which verifies it
and hands it to the devices running ``from_version``; they verify it again.

    edgeseg-factory rollback-order --from retail-tier/20261201T000000Z \\
        --to retail-tier/20261126T120000Z [--key-dir DIR] [--out order.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from factory.signing import PRIVATE_KEY_NAME, default_key_dir, load_or_create_key

__all__ = ["add_rollback_parser", "rollback_order", "run_rollback_order", "signed_bytes"]

_PART = re.compile(r"[A-Za-z0-9._-]+")


def signed_bytes(order: dict[str, Any]) -> bytes:
    """The bytes the order's signature covers: every field but ``signature``, canonical JSON."""
    unsigned = {key: value for key, value in order.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _split(model_version: str, flag: str) -> tuple[str, str]:
    name, _, version = model_version.partition("/")
    for part in (name, version):
        if not _PART.fullmatch(part) or part in (".", ".."):
            raise ValueError(f"{flag} {model_version!r} must be <name>/<version>, each [A-Za-z0-9._-]+ (not . or ..)")
    return name, version


def rollback_order(
    from_version: str,
    to_version: str,
    key: Ed25519PrivateKey,
    *,
    issued_at: datetime | None = None,
    order_id: str | None = None,
) -> dict[str, Any]:
    """A signed order to go back from ``from_version`` to the older ``to_version``.

    Raises ValueError when a version is malformed or ``to_version`` is not older (versions
    are ordered by their string, the factory's ``YYYYMMDDTHHMMSSZ``).
    """
    _, old = _split(to_version, "--to")
    _, new = _split(from_version, "--from")
    if not old < new:
        raise ValueError(f"--to {to_version} is not older than --from {from_version}")
    moment = (issued_at or datetime.now(UTC)).astimezone(UTC)
    order: dict[str, Any] = {
        "kind": "rollback",
        "from_version": from_version,
        "to_version": to_version,
        "issued_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "order_id": order_id or uuid.uuid4().hex,
    }
    order["signature"] = base64.b64encode(key.sign(signed_bytes(order))).decode("ascii")
    return order


def add_rollback_parser(commands: Any) -> None:
    """Register ``rollback-order`` on the factory CLI's subcommands."""
    parser = commands.add_parser("rollback-order", help="sign an order that rolls devices back to an older model")
    parser.add_argument("--from", dest="from_version", required=True, metavar="NAME/VERSION", help="the bad version")
    parser.add_argument("--to", dest="to_version", required=True, metavar="NAME/VERSION", help="the older version")
    parser.add_argument("--key-dir", type=Path, default=None, help="signing key folder (default: $EDGESEG_KEY_DIR)")
    parser.add_argument("--out", type=Path, default=None, help="write the order here (default: stdout)")


def run_rollback_order(args: argparse.Namespace) -> int:
    """``edgeseg-factory rollback-order``: 0 written, 2 refused (message on stderr)."""
    key_dir = args.key_dir if args.key_dir is not None else default_key_dir()
    try:
        if not (key_dir / PRIVATE_KEY_NAME).is_file():
            # A fresh key would sign an order no device trusts: never create one here.
            raise ValueError(f"no signing key in {key_dir} (the key that signed the manifests is needed)")
        order = rollback_order(args.from_version, args.to_version, load_or_create_key(key_dir))
    except ValueError as exc:
        print(f"edgeseg-factory: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(order, indent=2, sort_keys=True) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote rollback order {order['order_id']} to {args.out}", file=sys.stderr)
    return 0
