"""The read-only numbers head office looks at: segment mix, accuracy and recall.

Drift reports are read through ``central.services.drift``.

Small-cell suppression (docs/PRIVACY.md): a store x bucket (hour, day or ISO week) x segment
cell of the mix, or a
segment's outcome count, built from fewer than ``min_customers`` distinct customers (a result
without a ref counts as its own customer) is never returned: it is left out and counted in
``suppressed``. Totals are sums of the cells shown, so a suppressed cell cannot be recovered
by subtraction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from central.models import Device, Outcome, Result, utc_now
from central.schemas import AccuracyPublic, SegmentMixRow

__all__ = ["BUCKETS", "accuracy", "segment_mix_suppressed"]

BUCKETS = ("hour", "day", "week")  # how the mix groups classification times (UTC)


def _day(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


def _bucket_key(session: Session, bucket: str) -> ColumnElement[object]:
    """The SQL expression naming a result's bucket as text: ``YYYY-MM-DD HH:00`` for an hour,
    ``YYYY-MM-DD`` for a day or for the Monday that starts an ISO week.

    Grouped in the database, not in Python, so that small-cell suppression counts the
    customers of the cell as shown (summing suppressed day cells into a week would hide more
    than needed, and splitting day cells into hours is impossible after the fact)."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {BUCKETS}, got {bucket!r}")
    at = Result.classified_at
    if session.get_bind().dialect.name == "postgresql":
        unit = "day" if bucket == "day" else bucket
        pattern = "YYYY-MM-DD HH24:00" if bucket == "hour" else "YYYY-MM-DD"
        return func.to_char(func.date_trunc(unit, at), pattern)
    if bucket == "hour":
        return func.strftime("%Y-%m-%d %H:00", at)
    if bucket == "week":  # SQLite: the next Sunday (or this one), back six days to its Monday
        return func.date(at, "weekday 0", "-6 days")
    return func.date(at)


def segment_mix_suppressed(
    session: Session,
    *,
    days: int | None = None,
    store: str | None = None,
    min_customers: int = 1,
    bucket: str = "day",
    since: date | None = None,
    until: date | None = None,
) -> tuple[list[SegmentMixRow], int]:
    """Result counts per store, UTC ``bucket`` of classification and segment, and how many
    cells it suppressed: cells of fewer than ``min_customers`` customers are left out.

    ``since``/``until`` are inclusive UTC days; ``days`` keeps the last ``days`` days."""
    key = _bucket_key(session, bucket)
    customers = func.count(func.distinct(Result.customer_ref)) + func.sum(
        case((Result.customer_ref.is_(None), 1), else_=0)
    )
    query = (
        select(Device.store, key, Result.segment, func.count(), customers)
        .join(Device, Device.id == Result.device_id)
        .group_by(Device.store, key, Result.segment)
        .order_by(Device.store, key, Result.segment)
    )
    if days is not None:
        start = (utc_now() - timedelta(days=days)).replace(hour=0, minute=0, second=0)
        query = query.where(Result.classified_at >= start)
    if since is not None:
        query = query.where(Result.classified_at >= datetime.combine(since, time.min))
    if until is not None:
        query = query.where(Result.classified_at < datetime.combine(until + timedelta(days=1), time.min))
    if store is not None:
        query = query.where(Device.store == store)
    rows, suppressed = [], 0
    for s, b, seg, n, people in session.execute(query):
        if int(people) < min_customers:
            suppressed += 1
            continue
        rows.append(SegmentMixRow(store=s, day=_day(b) if bucket != "hour" else str(b), segment=seg, count=int(n)))
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
