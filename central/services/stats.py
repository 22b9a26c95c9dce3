"""The read-only numbers head office looks at: segment mix, accuracy and recall.

Drift reports are read through ``central.services.drift``.

Small-cell suppression (docs/PRIVACY.md): a store x day x segment cell of the mix, or a
segment's outcome count, built from fewer than ``min_customers`` distinct customers (a result
without a ref counts as its own customer) is never returned: it is left out and counted in
``suppressed``. Totals are sums of the cells shown, so a suppressed cell cannot be recovered
by subtraction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from central.models import Device, Outcome, Result, utc_now
from central.schemas import AccuracyPublic, SegmentMixRow

__all__ = ["accuracy", "segment_mix"]


def _day(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


def segment_mix(
    session: Session, *, days: int | None = None, store: str | None = None, min_customers: int = 1
) -> list[SegmentMixRow]:
    """Result counts per store, UTC day of classification and segment, cells of fewer than
    ``min_customers`` customers left out (:func:`segment_mix_suppressed` counts them)."""
    return _segment_mix(session, days=days, store=store, min_customers=min_customers)[0]


def segment_mix_suppressed(
    session: Session, *, days: int | None = None, store: str | None = None, min_customers: int = 1
) -> tuple[list[SegmentMixRow], int]:
    """:func:`segment_mix` and how many cells it suppressed."""
    return _segment_mix(session, days=days, store=store, min_customers=min_customers)


def _segment_mix(
    session: Session, *, days: int | None, store: str | None, min_customers: int
) -> tuple[list[SegmentMixRow], int]:
    day = func.date(Result.classified_at)
    customers = func.count(func.distinct(Result.customer_ref)) + func.sum(
        case((Result.customer_ref.is_(None), 1), else_=0)
    )
    query = (
        select(Device.store, day, Result.segment, func.count(), customers)
        .join(Device, Device.id == Result.device_id)
        .group_by(Device.store, day, Result.segment)
        .order_by(Device.store, day, Result.segment)
    )
    if days is not None:
        since = (utc_now() - timedelta(days=days)).replace(hour=0, minute=0, second=0)
        query = query.where(Result.classified_at >= since)
    if store is not None:
        query = query.where(Device.store == store)
    rows, suppressed = [], 0
    for s, d, seg, n, people in session.execute(query):
        if int(people) < min_customers:
            suppressed += 1
            continue
        rows.append(SegmentMixRow(store=s, day=_day(d), segment=seg, count=int(n)))
    return rows, suppressed


def accuracy(session: Session, *, min_customers: int = 1) -> AccuracyPublic:
    """Compare each customer's latest prediction with the outcome head office reported.

    A segment with fewer than ``min_customers`` outcomes has no recall and no support shown
    (listed in ``suppressed``); overall accuracy needs ``min_customers`` outcomes too."""
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
    small = sorted(seg for seg, n in support.items() if n < min_customers)
    shown = {seg: n for seg, n in sorted(support.items()) if n >= min_customers}
    evaluated = sum(shown.values())
    return AccuracyPublic(
        evaluated=evaluated,
        accuracy=(sum(hits[seg] for seg in shown) / evaluated) if evaluated >= max(min_customers, 1) else None,
        recall={seg: hits[seg] / n for seg, n in shown.items()},
        support=shown,
        suppressed=small,
    )
