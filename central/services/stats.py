"""The read-only numbers head office looks at: segment mix, accuracy and recall.

Drift reports are read through ``central.services.drift``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import Device, Outcome, Result, utc_now
from central.schemas import AccuracyPublic, SegmentMixRow

__all__ = ["accuracy", "segment_mix"]


def _day(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


def segment_mix(session: Session, *, days: int | None = None, store: str | None = None) -> list[SegmentMixRow]:
    """Result counts per store, UTC day of classification and segment."""
    day = func.date(Result.classified_at)
    query = (
        select(Device.store, day, Result.segment, func.count())
        .join(Device, Device.id == Result.device_id)
        .group_by(Device.store, day, Result.segment)
        .order_by(Device.store, day, Result.segment)
    )
    if days is not None:
        since = (utc_now() - timedelta(days=days)).replace(hour=0, minute=0, second=0)
        query = query.where(Result.classified_at >= since)
    if store is not None:
        query = query.where(Device.store == store)
    return [SegmentMixRow(store=s, day=_day(d), segment=seg, count=int(n)) for s, d, seg, n in session.execute(query)]


def accuracy(session: Session) -> AccuracyPublic:
    """Compare each customer's latest prediction with the outcome head office reported."""
    latest = select(Result.customer_ref, func.max(Result.id).label("id")).group_by(Result.customer_ref).subquery()
    pairs = session.execute(
        select(Outcome.actual_segment, Result.segment, func.count())
        .join(latest, latest.c.customer_ref == Outcome.customer_ref)
        .join(Result, Result.id == latest.c.id)
        .group_by(Outcome.actual_segment, Result.segment)
    ).all()
    support: dict[str, int] = defaultdict(int)
    hits: dict[str, int] = defaultdict(int)
    for actual, predicted, count in pairs:
        support[actual] += int(count)
        if actual == predicted:
            hits[actual] += int(count)
    evaluated = sum(support.values())
    return AccuracyPublic(
        evaluated=evaluated,
        accuracy=(sum(hits.values()) / evaluated) if evaluated else None,
        recall={seg: hits[seg] / n for seg, n in sorted(support.items())},
        support=dict(sorted(support.items())),
    )
