"""Central's tables (SQLAlchemy 2 declarative). API shapes live in ``schemas.py``, never here.

Times are stored as naive UTC (``utc_now()``), so SQLite and PostgreSQL group days the same.
Artifact files are rows too: central stays stateless behind its database (docs/DESIGN.md §7), so any
worker can serve any download.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Device",
    "DeviceEvent",
    "DriftReport",
    "Model",
    "ModelFile",
    "ModelReport",
    "Outcome",
    "OutboxEpoch",
    "Result",
    "ResultKey",
    "Rollout",
    "RolloutEvent",
    "StagedRollout",
    "StoreName",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


# BigInteger ids on PostgreSQL, INTEGER (the rowid alias, so autoincrement works) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# When a row was written (naive UTC); SQLAlchemy's Annotated pattern declares the column once.
Timestamp = Annotated[datetime, mapped_column(DateTime, default=utc_now)]


class _DeviceEvent:
    """Columns of a row a device sends over time (model reports, drift reports)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), index=True)
    created_at: Mapped[Timestamp]


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[Timestamp]
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The outbox epoch of the newest batch and its watermark (a copy of that OutboxEpoch row's,
    # for the device listing); each epoch's own watermark lives in outbox_epochs.
    epoch: Mapped[str] = mapped_column(String(32), default="", server_default="")
    acked_through: Mapped[int] = mapped_column(BigInteger, default=0)
    results_count: Mapped[int] = mapped_column(BigInteger, default=0)
    backlog: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(200), nullable=True)


class StoreName(Base):
    """A store's display name for people ("Leeds Briggate"): stores are the strings devices
    were registered with (``device add --store``), which stay the key everywhere else."""

    __tablename__ = "store_names"

    store: Mapped[str] = mapped_column(String(128), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    renamed_at: Mapped[Timestamp]


class OutboxEpoch(Base):
    """One outbox of a device: a recreated or quarantined outbox starts a new epoch, whose seqs
    start at 1 again without colliding with the old ones (docs/DESIGN.md §5)."""

    __tablename__ = "outbox_epochs"

    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Highest seq held contiguously from 1: advanced per batch, so acking is O(batch).
    acked_through: Mapped[int] = mapped_column(BigInteger, default=0)
    results_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[Timestamp]


class Result(Base):
    """A classified result. On PostgreSQL the table is partitioned by month of ``received_at``
    (migration 0003, ``central.core.partitions``): the primary key there is ``(id, received_at)``
    and exactly-once lives in ``result_keys``, whose primary key no partition boundary splits."""

    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_customer_ref", "customer_ref"),
        Index("ix_results_classified_at", "classified_at"),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    epoch: Mapped[str] = mapped_column(String(32), default="", server_default="")
    seq: Mapped[int] = mapped_column(BigInteger)
    customer_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    segment: Mapped[str] = mapped_column(String(128))
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(200))
    classified_at: Mapped[datetime] = mapped_column(DateTime)
    received_at: Mapped[Timestamp]


class ResultKey(Base):
    """Each ``(device_id, epoch, seq)`` ever stored, once: the exactly-once ledger.

    Unpartitioned, so its primary key is global (a unique key of the partitioned ``results``
    would have to include the partition column). Keeps the sha256 of the canonical content
    (``services.results.content_hash``): a replay with other content is a conflict. Retention
    deletes a key only when its result is gone and its seq is at or below the epoch's watermark,
    which then answers for it (``central.core.partitions.apply_retention``).
    """

    __tablename__ = "result_keys"

    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    # No index: only retention reads it, once a month, and every index slows each insert.
    received_at: Mapped[datetime] = mapped_column(DateTime)


class Model(Base):
    __tablename__ = "models"

    model_version: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100))
    classes: Mapped[list[str]] = mapped_column(JSON)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    registered_at: Mapped[Timestamp]
    # Read-only views for ``ModelPublic`` (``model_validate(..., from_attributes=True)``); rows
    # are added through their own tables, so these collections never write.
    files: Mapped[list[ModelFile]] = relationship(order_by="ModelFile.name", viewonly=True)
    rollouts: Mapped[list[Rollout]] = relationship(order_by="Rollout.id", viewonly=True)


class ModelFile(Base):
    __tablename__ = "model_files"

    model_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Deferred: listing a model's files must not read their bytes.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))


class Rollout(Base):
    """The newest rollout for a device's store wins; else the newest one for every store."""

    __tablename__ = "rollouts"
    __table_args__ = (UniqueConstraint("rollback_order_id", name="uq_rollouts_rollback_order_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"))
    store: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    created_at: Mapped[Timestamp]
    # A rollout to an older version carries the signed order that allows it (its order_id is
    # used once); devices running the order's from_version receive it with the offer.
    rollback_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rollback_order: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ModelReport(_DeviceEvent, Base):
    __tablename__ = "model_reports"

    model_version: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(2000), default="")


class DeviceEvent(_DeviceEvent, Base):
    """What a device says about itself (``outbox_quarantined``: a corrupt outbox moved aside)."""

    __tablename__ = "device_events"

    kind: Mapped[str] = mapped_column(String(64))
    epoch_old: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch_new: Mapped[str | None] = mapped_column(String(32), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    detail: Mapped[str] = mapped_column(String(2000), default="")


class DriftReport(_DeviceEvent, Base):
    __tablename__ = "drift_reports"

    model_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"))
    rows: Mapped[int] = mapped_column(BigInteger)
    psi: Mapped[dict[str, float]] = mapped_column(JSON)
    max_psi: Mapped[float] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean)


class Outcome(Base):
    """What actually happened to a customer; the newest report per customer_ref wins."""

    __tablename__ = "outcomes"

    customer_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    actual_segment: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[Timestamp]


class StagedRollout(Base):
    """A challenger on canary stores first, watched against the champion stores, then promoted to
    every store or rolled back (``central.services.rollouts``). ``started_at`` is the scheduler's
    clock (tests move it); ``created_at`` central's, which device reports are compared with."""

    __tablename__ = "staged_rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"))
    champion_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"))
    canary_stores: Mapped[list[str]] = mapped_column(JSON)
    # canary (watching) | paused (not evaluated) | promoted | rolled_back
    state: Mapped[str] = mapped_column(String(16), index=True)
    watch_s: Mapped[float] = mapped_column(Float)
    min_outcomes: Mapped[int] = mapped_column(Integer)
    tolerance: Mapped[float] = mapped_column(Float)
    # One signed order per canary store (from model_version to champion_version), pre-signed by
    # the operator with the factory key at start: central never holds that key.
    rollback_orders: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[Timestamp]
    events: Mapped[list[RolloutEvent]] = relationship(order_by="RolloutEvent.id", viewonly=True)


class RolloutEvent(Base):
    """One auditable step of a staged rollout: who, what, when (scheduler clock), why, numbers."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("staged_rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(2000), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[Timestamp]


# The privacy tables (issue 15) live in their own module; importing it registers them here.
from central import privacy_models as _privacy_models  # noqa: E402, F401
