"""A store's signed customer-state snapshot from the transaction log (issue 11, docs/DESIGN.md §4a).

A new till should not start with every customer unknown. Head office replays the log up to a
date (``until``, exclusive) through the device implementation (``edge_runtime.customer_state``,
the same code the skew gate checks against the factory's features), keyed by the deployment's
pseudonyms (``edge_runtime.runtime.customer_ref_for`` with the deployment secret, read from
``EDGESEG_SECRET``: refs made with another key would never match the till's lookups), and
signs a small manifest with the factory key, as it signs a model's. The device verifies and
installs it (``edge-runtime bootstrap-state``, ``edge_runtime.state_snapshot``) and continues
with the events after ``until``: the same state as if it had seen every event itself.

Layout and fields: ``edge_runtime/state_snapshot.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from edge_runtime.customer_state import CustomerState
from edge_runtime.runtime import customer_ref_for
from edge_runtime.signing import key_id
from edge_runtime.state_snapshot import (
    SECRET_CHECK_ID,
    SNAPSHOT_FILE,
    SNAPSHOT_FORMAT,
    SNAPSHOT_KIND,
    SNAPSHOT_SIGNATURE_FILE,
    STATE_FILE,
)
from factory.errors import FactoryInputError
from factory.features._columns import CUSTOMER_ID, TIMESTAMP
from factory.features._params import as_cutoff
from factory.features._table import default_log_path, load_log
from factory.signing import load_or_create_key, sign_manifest
from factory.skew import program_for_log, replay_log

__all__ = ["add_state_snapshot_parser", "build_state_snapshot", "run_state_snapshot"]


def build_state_snapshot(
    log_path: str | Path | None,
    until: pd.Timestamp | str,
    out_dir: str | Path,
    *,
    store: str,
    secret: str | bytes,
    customers: Iterable[str] | None = None,
    dormant_days: float = 30.0,
    key_dir: Path | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/{customer_state.sqlite, snapshot.json, snapshot.sig}``; returns snapshot.json.

    ``customers``: the store's raw customer ids (default: every customer of the log);
    ``dormant_days`` must be the model's (the program is compared on the device).
    """
    owner = "build_state_snapshot"
    cutoff = as_cutoff(until, owner)
    if not store or not isinstance(store, str):
        raise FactoryInputError(f"The 'store' parameter of {owner} must be a non-empty string. Got {store!r} instead.")
    loaded = load_log(default_log_path() if log_path is None else log_path)
    assert loaded.frame is not None  # the pandas engine keeps the frame
    log = loaded.frame
    program = program_for_log(log, loaded.columns, dormant_days=dormant_days)
    past = log.loc[log[TIMESTAMP] < cutoff]
    if customers is not None:
        past = past.loc[past[CUSTOMER_ID].isin(set(customers))]
    if past.empty:
        raise FactoryInputError(f"{owner}: no log line of store {store!r} before {cutoff.isoformat()}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / STATE_FILE
    for stale in (state_path, Path(f"{state_path}-wal"), Path(f"{state_path}-shm")):
        stale.unlink(missing_ok=True)  # a snapshot is built from scratch, never on top of another
    clock_s = (cutoff - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    with CustomerState(state_path, program, clock=lambda: clock_s) as state:
        _, lines, ids = replay_log(state, past, program, ref=lambda raw: customer_ref_for(secret, raw))
    db = sqlite3.connect(state_path, isolation_level=None)  # one self-contained, compact file
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("VACUUM")
    finally:
        db.close()
    state_bytes = state_path.read_bytes()
    key = load_or_create_key(key_dir)
    manifest = {
        "kind": SNAPSHOT_KIND,
        "format_version": SNAPSHOT_FORMAT,
        "store": store,
        "until": cutoff.isoformat(),
        "feature_program": program.to_json(),
        "state_sha256": hashlib.sha256(state_bytes).hexdigest(),
        "state_bytes": len(state_bytes),
        "customers": len(ids),
        "lines": lines,
        "secret_check": customer_ref_for(secret, SECRET_CHECK_ID),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": key_id(key.public_key()),
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (folder / SNAPSHOT_FILE).write_bytes(data)
    (folder / SNAPSHOT_SIGNATURE_FILE).write_bytes(sign_manifest(data, key))
    return manifest


def add_state_snapshot_parser(commands: Any) -> None:
    """Register ``state-snapshot`` on the factory CLI's subcommands."""
    parser = commands.add_parser(
        "state-snapshot", help="sign a store's customer-state snapshot from the log up to a date (bootstraps a till)"
    )
    parser.add_argument("--log", type=Path, default=None, help="transaction log (default: the bundled Online Retail)")
    parser.add_argument("--until", required=True, help="lines strictly before this date/time go into the state")
    parser.add_argument("--store", required=True, help="the store this snapshot is for (recorded in snapshot.json)")
    parser.add_argument("--customers", type=Path, default=None, help="file of the store's customer ids, one a line")
    parser.add_argument("--dormant-days", type=float, default=30.0, help="the model's dormant window (default 30)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the snapshot into")
    parser.add_argument("--key-dir", type=Path, default=None, help="signing key folder (default: $EDGESEG_KEY_DIR)")


def run_state_snapshot(args: argparse.Namespace) -> int:
    """``edgeseg-factory state-snapshot``: 0 written (snapshot.json on stdout), 2 refused."""
    secret = os.environ.get("EDGESEG_SECRET")
    if not secret:
        print(
            "edgeseg-factory: error: EDGESEG_SECRET is not set (the deployment secret that pseudonymises the store's "
            "customer ids; never a flag)",
            file=sys.stderr,
        )
        return 2
    try:
        customers = None
        if args.customers is not None:
            customers = [
                line.strip() for line in args.customers.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        manifest = build_state_snapshot(
            args.log, args.until, args.out, store=args.store, secret=secret, customers=customers,
            dormant_days=args.dormant_days, key_dir=args.key_dir,
        )  # fmt: skip
    except (OSError, ValueError) as exc:  # FactoryInputError is a ValueError
        print(f"edgeseg-factory: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0
