"""Validate and store a batch of results exactly once, and advance the outbox's watermark.

Results are keyed by ``(device_id, epoch, seq)``: every device outbox has an epoch (32 hex
characters; "" for devices that predate epochs), so an outbox that is recreated or quarantined
starts at seq 1 again without colliding with the old one (docs/DESIGN.md §5).

The whole batch is checked before anything is written, so a 4xx stores nothing. Exactly-once is
content-checked and kept by ``result_keys`` (one row per ``(device, epoch, seq)``, primary key
across every monthly partition of ``results``, with the sha256 of the canonical content,
``content_hash``): a replay of a stored key with other content is a 409 ``Conflict`` naming the
seq, never a duplicate the device would then mark synced. Keys go in with ``INSERT … ON CONFLICT
(device_id, epoch, seq) DO NOTHING RETURNING seq`` and only the rows whose key went in are
stored (PostgreSQL: one statement). A seq at or below the epoch's watermark whose key retention
removed is a duplicate too. The watermark of ``outbox_epochs`` only moves forward, reading at
most one batch's worth of keys past it, so an ack costs O(batch) instead of a scan of the
outbox's history.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, or_, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from central.core.partitions import ensure_month
from central.models import Device, Model, OutboxEpoch, Result, ResultKey, Rollout, utc_now
from central.schemas import ResultCreate
from central.services.errors import BatchRejected, Conflict

__all__ = [
    "ARGMAX_TOLERANCE",
    "PROBABILITY_TOLERANCE",
    "BatchRejected",
    "ClassCache",
    "IngestOutcome",
    "content_hash",
    "ingest",
    "validate_batch",
]

PROBABILITY_TOLERANCE = 1e-3
# The segment is the class of highest probability; the label and the probabilities come from
# two ONNX outputs (float32), so a tie may differ in the last bits.
ARGMAX_TOLERANCE = 1e-6
# Rows the watermark reads per query: a constant floor keeps a small batch that closes a gap
# from walking a long stored run two rows at a time.
_MIN_WINDOW = 512


@dataclass(frozen=True)
class IngestOutcome:
    acked_through: int
    stored: int
    duplicates: int
    epoch: str


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def content_hash(
    *,
    segment: str,
    probabilities: Mapping[str, float],
    model_version: str,
    customer_ref: str | None,
    classified_at: datetime,
) -> str:
    """sha256 of a result's content as canonical JSON (sorted keys, no spaces, UTC time).

    The same for the row a device sends and the row central stored (naive UTC), so a legacy
    row without a stored hash can be compared too.
    """
    document = {
        "classified_at": _utc_naive(classified_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "customer_ref": customer_ref,
        "model_version": model_version,
        "probabilities": {name: float(p) for name, p in probabilities.items()},
        "segment": segment,
    }
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class ClassCache:
    """model_version -> classes, and which (store, model_version) pairs were ever rolled out.

    Registered models never change and rollouts are never deleted, so hits are kept forever;
    misses are asked again (a rollout may come later).
    """

    def __init__(self) -> None:
        self._classes: dict[str, tuple[str, ...]] = {}
        self._rolled_out: set[tuple[str, str]] = set()

    def lookup(self, session: Session, versions: set[str]) -> dict[str, tuple[str, ...]]:
        missing = [v for v in versions if v not in self._classes]
        if missing:
            for version, classes in session.execute(
                select(Model.model_version, Model.classes).where(Model.model_version.in_(missing))
            ):
                self._classes[version] = tuple(classes)
        return {v: self._classes[v] for v in versions if v in self._classes}

    def rolled_out(self, session: Session, store: str, versions: set[str]) -> set[str]:
        """The ``versions`` that were rolled out to ``store`` or to every store, ever."""
        missing = [v for v in versions if (store, v) not in self._rolled_out]
        if missing:
            query = select(Rollout.model_version).where(
                Rollout.model_version.in_(missing), or_(Rollout.store == store, Rollout.store.is_(None))
            )
            self._rolled_out.update((store, v) for v in session.scalars(query))
        return {v for v in versions if (store, v) in self._rolled_out}


def validate_batch(
    session: Session,
    results: Sequence[ResultCreate],
    cache: ClassCache,
    *,
    store: str,
    now: datetime | None = None,
    max_future_skew_s: float = 86400.0,
) -> None:
    """Raise BatchRejected for the first result that breaks a rule pydantic cannot check.

    Besides the model's classes: the segment must be the argmax of the probabilities, the model
    must have been rolled out to the device's ``store``, and ``classified_at`` may be at most
    ``max_future_skew_s`` ahead of central's clock (``now``, naive UTC).
    """
    classes_of = cache.lookup(session, {r.model_version for r in results})
    served = cache.rolled_out(session, store, set(classes_of))
    latest = (now or utc_now()) + timedelta(seconds=max_future_skew_s)
    seen: dict[int, int] = {}
    for i, result in enumerate(results):
        where = f"results[{i}]"
        if result.seq in seen:
            raise BatchRejected(
                f"{where}.seq: {result.seq} appears twice in this batch (first at results[{seen[result.seq]}])"
            )
        seen[result.seq] = i
        classes = classes_of.get(result.model_version)
        if classes is None:
            raise BatchRejected(f"{where}.model_version: {result.model_version!r} is not registered at central")
        if set(result.probabilities) != set(classes) or len(result.probabilities) != len(classes):
            raise BatchRejected(
                f"{where}.probabilities: keys {sorted(result.probabilities)} are not the classes "
                f"of {result.model_version} {sorted(classes)}"
            )
        total = math.fsum(result.probabilities.values())
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise BatchRejected(
                f"{where}.probabilities: sum to {total:.6g}, not 1 (tolerance {PROBABILITY_TOLERANCE:g})"
            )
        if result.segment not in classes:
            raise BatchRejected(
                f"{where}.segment: {result.segment!r} is not a class of {result.model_version} ({', '.join(classes)})"
            )
        best = max(result.probabilities, key=result.probabilities.__getitem__)
        if result.probabilities[result.segment] < result.probabilities[best] - ARGMAX_TOLERANCE:
            raise BatchRejected(
                f"{where}.segment: {result.segment!r} is not the most probable class "
                f"({best!r}: {result.probabilities[best]:.6g} > {result.probabilities[result.segment]:.6g})"
            )
        if result.model_version not in served:
            raise BatchRejected(
                f"{where}.model_version: {result.model_version} was never rolled out to store {store!r}"
            )
        if _utc_naive(result.classified_at) > latest:
            raise BatchRejected(
                f"{where}.classified_at: {result.classified_at.isoformat()} is more than "
                f"{max_future_skew_s:g} s ahead of central's clock (EDGESEG_MAX_FUTURE_SKEW_S)"
            )


# PostgreSQL: one statement with array parameters. A multi-row VALUES list with 4000
# placeholders spends most of its time in the driver's query conversion (measured 3x slower).
# The keys go in first; only the rows whose key went in reach the partitioned results table.
_PG_INSERT = text(
    """
    WITH u AS (
        SELECT * FROM unnest(CAST(:seqs AS bigint[]), CAST(:customer_refs AS text[]),
                             CAST(:segments AS text[]), CAST(:probabilities AS text[]),
                             CAST(:model_versions AS text[]), CAST(:classified_ats AS timestamp[]),
                             CAST(:hashes AS text[]))
             AS u(seq, customer_ref, segment, probabilities, model_version, classified_at,
                  content_sha256)
    ), k AS (
        INSERT INTO result_keys (device_id, epoch, seq, content_sha256, received_at)
        SELECT :device_id, :epoch, u.seq, u.content_sha256, :received_at FROM u
        ON CONFLICT (device_id, epoch, seq) DO NOTHING
        RETURNING seq
    )
    INSERT INTO results
        (device_id, epoch, seq, customer_ref, segment, probabilities, model_version,
         classified_at, received_at)
    SELECT :device_id, :epoch, u.seq, u.customer_ref, u.segment, CAST(u.probabilities AS json),
           u.model_version, u.classified_at, :received_at
    FROM u JOIN k ON k.seq = u.seq
    RETURNING seq
    """
)


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    dialect = session.get_bind().dialect.name
    table = cast(Table, Result.__table__)
    if dialect == "postgresql":
        params = {
            "device_id": rows[0]["device_id"],
            "epoch": rows[0]["epoch"],
            "received_at": rows[0]["received_at"],
            "seqs": [r["seq"] for r in rows],
            "customer_refs": [r["customer_ref"] for r in rows],
            "segments": [r["segment"] for r in rows],
            "probabilities": [json.dumps(r["probabilities"]) for r in rows],
            "model_versions": [r["model_version"] for r in rows],
            "classified_ats": [r["classified_at"] for r in rows],
            "hashes": [r["content_sha256"] for r in rows],
        }
        return sorted(session.execute(_PG_INSERT, params).scalars())
    if dialect != "sqlite":  # pragma: no cover - the two supported back ends
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    keys = cast(Table, ResultKey.__table__)
    key_rows = [{k: r[k] for k in ("device_id", "epoch", "seq", "content_sha256", "received_at")} for r in rows]
    stmt = sqlite.insert(keys).on_conflict_do_nothing(index_elements=["device_id", "epoch", "seq"])
    fresh = set(session.connection().execute(stmt.returning(keys.c.seq), key_rows).scalars())
    if fresh:
        columns = set(table.c.keys())
        session.connection().execute(
            table.insert(), [{k: v for k, v in r.items() if k in columns} for r in rows if r["seq"] in fresh]
        )
    return sorted(fresh)


def _check_replays(session: Session, device_id: str, epoch: str, rows: list[dict[str, Any]]) -> set[int]:
    """The seqs of the batch already stored; Conflict when one was stored with other content.

    Runs under the device row's lock, before the insert, so a 409 stores nothing.
    """
    by_seq = {r["seq"]: r for r in rows}
    stored = session.execute(
        select(ResultKey.seq, ResultKey.content_sha256).where(
            ResultKey.device_id == device_id, ResultKey.epoch == epoch, ResultKey.seq.in_(list(by_seq))
        )
    ).all()
    for seq, digest in sorted(stored):
        if digest != by_seq[seq]["content_sha256"]:
            raise Conflict(
                f"result seq {seq} of epoch {epoch or repr(epoch)} conflicts with the stored result (content differs)"
            )
    return {seq for seq, _ in stored}


def _advance_watermark(session: Session, device_id: str, epoch: str, watermark: int, window: int) -> int:
    """Move past every seq stored contiguously after ``watermark``, ``window`` rows at a time."""
    while True:
        seqs = session.scalars(
            select(ResultKey.seq)
            .where(ResultKey.device_id == device_id, ResultKey.epoch == epoch, ResultKey.seq > watermark)
            .order_by(ResultKey.seq)
            .limit(window)
        ).all()
        for seq in seqs:
            if seq != watermark + 1:
                return watermark
            watermark = seq
        if len(seqs) < window:
            return watermark


def _outbox_epoch(session: Session, device_id: str, epoch: str) -> tuple[OutboxEpoch, bool]:
    """The epoch's row and whether it was just created."""
    row = session.get(OutboxEpoch, (device_id, epoch))
    if row is not None:
        return row, False
    row = OutboxEpoch(device_id=device_id, epoch=epoch, acked_through=0, results_count=0, created_at=utc_now())
    session.add(row)
    return row, True


def ingest(
    session: Session,
    device_id: str,
    results: Sequence[ResultCreate],
    cache: ClassCache,
    *,
    epoch: str = "",
    backlog: int | None = None,
    max_future_skew_s: float = 86400.0,
) -> IngestOutcome:
    """Validate then store ``results`` for ``device_id``'s outbox ``epoch``; commits.

    Raises BatchRejected (a result breaks the contract) or Conflict (a stored seq replayed
    with other content); either way nothing is stored.
    """
    # On PostgreSQL the partition of ``now`` (every row's received_at) must exist: made once
    # per month and worker, in its own transaction, before any lock is held.
    now = utc_now()
    ensure_month(session.get_bind(), now)
    # Lock the device row first: concurrent batches of one device (a retry racing the original
    # request) take turns, so the watermark they read is never stale. SQLite's BEGIN IMMEDIATE
    # already serialises writers; SQLAlchemy leaves FOR UPDATE out there.
    device = session.scalars(
        select(Device).where(Device.id == device_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    validate_batch(session, results, cache, store=device.store, now=now, max_future_skew_s=max_future_skew_s)
    rows = [
        {
            "device_id": device_id,
            "epoch": epoch,
            "seq": r.seq,
            "customer_ref": r.customer_ref,
            "segment": r.segment,
            "probabilities": r.probabilities,
            "model_version": r.model_version,
            "classified_at": r.classified_at.astimezone(UTC).replace(tzinfo=None),
            "received_at": now,
            "content_sha256": content_hash(
                segment=r.segment,
                probabilities=r.probabilities,
                model_version=r.model_version,
                customer_ref=r.customer_ref,
                classified_at=r.classified_at,
            ),
        }
        for r in results
    ]
    stored = _check_replays(session, device_id, epoch, rows) if rows else set()
    outbox, new_epoch = _outbox_epoch(session, device_id, epoch)
    watermark = outbox.acked_through
    # At or below the watermark a seq was stored, even when retention has since removed it.
    fresh = [r for r, result in zip(rows, results, strict=True) if result.seq not in stored and result.seq > watermark]
    inserted = _insert_ignoring_duplicates(session, fresh) if fresh else []
    if inserted and outbox.results_count == watermark and inserted == list(range(watermark + 1, inserted[-1] + 1)):
        # In-order delivery, the usual case: nothing was stored above the watermark (every key of
        # the epoch is at or below it) and this batch continues it without a hole, so the new
        # watermark is its last seq; no query. (Could the count be off, this only under-acks.)
        watermark = inserted[-1]
    elif watermark + 1 in set(inserted):
        watermark = _advance_watermark(session, device_id, epoch, watermark, max(len(rows) + 1, _MIN_WINDOW))
    outbox.acked_through = watermark
    outbox.results_count = outbox.results_count + len(inserted)
    if new_epoch or epoch == device.epoch:
        # The device listing shows its newest outbox; a late retry of an older epoch's batch
        # does not move it back.
        device.epoch = epoch
        device.acked_through = watermark
    device.results_count = device.results_count + len(inserted)
    device.last_seen_at = now
    if backlog is not None:
        device.backlog = backlog
    if results:
        device.model_version = max(results, key=lambda r: r.seq).model_version
    session.commit()
    return IngestOutcome(watermark, len(inserted), len(rows) - len(inserted), epoch)
