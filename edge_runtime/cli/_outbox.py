"""``edge-runtime outbox rehome --device-id ID``: give an outbox made before registration its id.

A till that classified before head office registered it wrote its outbox under the default
device id (the host name); ``edgeseg-central device add`` then named the device ``d-…`` (or took
``--device-id``), and the outbox refused the new id (seq numbers are per device). Rehoming
rewrites the outbox's device id in one transaction so its unsynced results sync under the new
id. It is refused once anything was sent under the old id: central keys results by device and
seq, so those would arrive twice under two names (keep the old id, or start a new outbox).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from pathlib import Path
from typing import Any, TextIO

from edge_runtime.cli._common import UsageError, add_model_arguments, close_runtime, open_runtime, settings_from

__all__ = ["register", "rehome_outbox"]

# What head office accepts as a device id (central's device add checks the same rule).
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def register(sub: Any) -> None:
    """Add ``outbox rehome`` and ``outcome`` to ``edge-runtime``'s subparsers."""
    p = sub.add_parser("outcome", help="record what a customer turned out to be (sent by sync, for accuracy)")
    p.add_argument("customer_id", help="the raw customer id (pseudonymised here, never sent)")
    p.add_argument("segment", help="the segment the customer turned out to be (a class of the model)")
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_outcome)

    outbox = sub.add_parser("outbox", help="manage this device's outbox file")
    commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    p = commands.add_parser("rehome", help="move an outbox that was never synced to another device id")
    p.add_argument("--device-id", required=True, help="the id head office registered (edgeseg-central device add)")
    p.add_argument("--outbox", type=Path, help="SQLite outbox path (EDGESEG_OUTBOX)")
    p.set_defaults(handler=run_rehome)


def rehome_outbox(path: Path, device_id: str) -> dict[str, Any]:
    """Rewrite the outbox's device id; returns ``{"outbox", "from", "to", "unsynced"}``.

    ValueError (naming the reason) when the id is not a valid device id, the file is not an
    outbox, or results were already sent under the old id.
    """
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise ValueError(f"device id {device_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if not path.is_file():
        raise ValueError(f"no outbox at {str(path)!r}")
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")  # a running classify waits; nothing interleaves the check and the write
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            unsynced = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{str(path)!r} is not an edgeseg outbox ({exc})") from exc
        old = meta.get("device_id")
        sent = max(int(meta.get("synced_through", "0") or 0), int(meta.get("sent_through", "0") or 0))
        if old != device_id and sent > 0:
            raise ValueError(
                f"outbox {str(path)!r} already sent results up to seq {sent} as device {old!r}: keep that id "
                f"(EDGESEG_DEVICE_ID={old}) or start a new outbox for {device_id!r}"
            )
        db.execute("UPDATE meta SET value = ? WHERE key = 'device_id'", (device_id,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()
    return {"outbox": str(path), "from": old, "to": device_id, "unsynced": unsynced}


def run_outcome(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Store one outcome by the customer's ref in the outbox file; ``sync`` sends it."""
    settings = settings_from(args)
    runtime = open_runtime(settings)
    try:
        ref = runtime.report_outcome(args.customer_id, args.segment)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        close_runtime(runtime, settings)
    stdout.write(json.dumps({"customer_ref": ref, "actual_segment": args.segment}) + "\n")
    return 0


def run_rehome(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = settings_from(args)
    try:
        moved = rehome_outbox(settings.outbox, args.device_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    stdout.write(json.dumps(moved) + "\n")
    stderr.write(
        f"outbox {moved['outbox']} now belongs to {moved['to']} (was {moved['from']}); "
        f"set EDGESEG_DEVICE_ID={moved['to']} for classify, serve and sync\n"
    )
    return 0
