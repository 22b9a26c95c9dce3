"""Central's privacy tables (issue 15): noised device reports, erasures and their audit.

Registered on ``central.models.Base`` (that module imports this one at its end), created by
migration 0005. Kept apart from ``central.models`` so the privacy design reads in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from central.models import Base, BigId, Timestamp

__all__ = ["Erasure", "ErasureDevice", "PrivateReport"]


class PrivateReport(Base):
    """One noised release a device sent: histograms and segment mix with Laplace/Gaussian noise.

    ``epsilon``/``delta`` are what this report spent; their sum per device and ``day`` (central's
    UTC day of receipt) is the spent budget. Counts are stored as sent (noisy, possibly
    negative) so sums over reports stay unbiased; readers clamp at zero where a share is needed.
    """

    __tablename__ = "private_reports"
    __table_args__ = (
        UniqueConstraint("device_id", "report_id", name="uq_private_reports_device_report"),
        Index("ix_private_reports_device_day", "device_id", "day"),
        Index("ix_private_reports_model_version", "model_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    report_id: Mapped[str] = mapped_column(String(32))
    store: Mapped[str] = mapped_column(String(128))
    day: Mapped[str] = mapped_column(String(10))
    model_version: Mapped[str] = mapped_column(String(200), ForeignKey("models.model_version"))
    mechanism: Mapped[str] = mapped_column(String(16))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    sensitivity: Mapped[int] = mapped_column(Integer)
    noise_std: Mapped[float] = mapped_column(Float)
    histograms: Mapped[dict[str, Any]] = mapped_column(JSON)
    segments: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[Timestamp]


class Erasure(Base):
    """An erasure request, and afterwards its audit record: *that* a customer was erased, when,
    and how many rows went, never *who*. ``customer_ref`` is held only while a device still has
    to apply it (central already held that ref in the erased results); it is set to NULL when
    the last device confirmed, and nothing else here identifies the customer.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    requested_at: Mapped[Timestamp]
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    results_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    outcomes_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    devices: Mapped[int] = mapped_column(Integer, default=0)


class ErasureDevice(Base):
    """One device's part of an erasure: queued at request time, confirmed by the device."""

    __tablename__ = "erasure_devices"

    erasure_id: Mapped[int] = mapped_column(BigId, ForeignKey("erasures.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # What the device reported removing (results deleted + unlinked, state rows) and what
    # central deleted again from that device at confirmation (results in flight meanwhile).
    device_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    late_results_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
