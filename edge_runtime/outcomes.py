"""Outcomes reported by the till itself: what a customer turned out to be, keyed by the same
pseudonym the device syncs results with, so head office can measure accuracy without ever
holding the device's secret.

Why here and not at head office: accuracy compares each customer's latest prediction with
what happened, and central knows customers only as ``customer_ref = HMAC(secret, raw id)``.
For head office to key outcomes itself it would need every deployment's secret, and with it
the power to re-identify any ref by hashing candidate ids. Instead the device, which has the
secret anyway, turns a raw id into its ref when the till learns the outcome
(``Runtime.report_outcome`` / ``edge-runtime outcome``), keeps it in the outbox file's
``outcomes`` table and ``edge-runtime sync`` sends it to ``POST /v1/devices/{id}/outcomes``.
What leaves the device: the ref and the segment name, nothing else (no raw id, no features).
The trade-off, documented in central/README.md: an outcome is only as good as the till's
knowledge, and a customer's outcome reported by two tills is "newest wins" at central.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES_PATH", "OutcomeSpool", "send_outcomes"]

# central's route; {device_id} is this device's (the token's own)
OUTCOMES_PATH = "/v1/devices/{device_id}/outcomes"
_BATCH = 1000  # central accepts up to 10,000 per request; smaller batches retry cheaply

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    customer_ref TEXT NOT NULL,
    actual_segment TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outcomes_unsent ON outcomes (sent, id);
"""


class OutcomeSpool:
    """Outcomes waiting for head office, in the outbox file (its own table; WAL like the outbox)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        return db

    def add(self, customer_ref: str, actual_segment: str, at: datetime | None = None) -> int:
        """Store one outcome (committed before this returns); returns its row id."""
        when = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        db = self._connect()
        try:
            cursor = db.execute(
                "INSERT INTO outcomes (customer_ref, actual_segment, reported_at) VALUES (?, ?, ?)",
                (customer_ref, actual_segment, when),
            )
            return int(cursor.lastrowid or 0)
        finally:
            db.close()

    def pending(self, limit: int = _BATCH) -> list[tuple[int, str, str]]:
        """The oldest unsent outcomes: ``(id, customer_ref, actual_segment)``."""
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT id, customer_ref, actual_segment FROM outcomes WHERE sent = 0 ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
            return [(int(i), str(ref), str(segment)) for i, ref, segment in rows]
        finally:
            db.close()

    def mark_sent(self, ids: list[int]) -> None:
        db = self._connect()
        try:
            db.executemany("UPDATE outcomes SET sent = 1 WHERE id = ?", [(i,) for i in ids])
        finally:
            db.close()

    def unsent(self) -> int:
        if not self.path.exists():
            return 0
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM outcomes WHERE sent = 0").fetchone()[0])
        finally:
            db.close()


def send_outcomes(
    request_json: Callable[[str, str, dict[str, Any]], dict[str, Any]], device_id: str, spool: OutcomeSpool
) -> int:
    """Send every unsent outcome in batches (``HeadOfficeClient.request_json``); returns how many.

    A batch is marked sent only after central's 2xx answer; a failure raises (the client's
    ``SyncError``) and leaves the rest for the next round. Resending is harmless: central keeps
    the newest outcome per customer.
    """
    sent = 0
    path = OUTCOMES_PATH.format(device_id=device_id)
    while True:
        batch = spool.pending(_BATCH)
        if not batch:
            return sent
        payload = {"outcomes": [{"customer_ref": ref, "actual_segment": segment} for _, ref, segment in batch]}
        request_json("POST", path, payload)
        spool.mark_sent([i for i, _, _ in batch])
        sent += len(batch)
