"""Monthly partitions of ``results`` on PostgreSQL, and the retention policy on both back ends.

Why ``received_at`` and not ``classified_at``: it is central's own clock, so every insert goes
to the current month's partition (one hot table and index in memory), a till with a wrong clock
can neither create partitions nor find none for its rows, and "keep N months" means what head
office held for N months. Exactly-once does not depend on the partitions: ``result_keys``
(unpartitioned) holds each ``(device_id, epoch, seq)`` once (see ``central.models.ResultKey``).

Partitions are created ahead (``edgeseg-central partitions ensure --months-ahead 3``, e.g. from a
daily cron) and on demand: the first batch a worker ingests in a month makes sure that month's
partition exists (``ensure_month``, remembered per engine). Creating one takes a transaction-level
advisory lock, so concurrent workers do not race on ``CREATE TABLE IF NOT EXISTS``.

Retention (``edgeseg-central retention apply --keep-months N``) keeps the current month and the
N-1 before it. PostgreSQL detaches and drops whole partitions (no row-by-row delete, no bloat);
SQLite, unpartitioned, deletes the rows. Keys of dropped results are deleted only at or below
their epoch's watermark, which from then on answers a replay of them as a duplicate; keys above
it (a gap that never closed) stay, so such a result is still never stored twice.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Connection, Engine, text

from central.models import utc_now

__all__ = [
    "Partition",
    "RetentionReport",
    "add_months",
    "apply_retention",
    "ensure_ahead",
    "ensure_month",
    "include_name",
    "list_partitions",
    "month_of",
    "partition_name",
    "retention_horizon",
]

# Any fixed 64-bit number, distinct from the migration lock (central.core.migrate).
_PARTITION_LOCK = 0x6564676573656732
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
# Months whose partition an engine has seen exist: retention never drops the current month,
# so an entry never goes stale while the process runs.
_known: weakref.WeakKeyDictionary[Engine, set[date]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Partition:
    name: str
    start: date  # inclusive
    end: date  # exclusive


@dataclass
class RetentionReport:
    backend: str
    horizon: date
    dropped_partitions: list[str] = field(default_factory=list)
    deleted_results: int = 0
    deleted_keys: int = 0


def month_of(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"results_y{month.year:04d}m{month.month:02d}"


_PARTITION_NAME = re.compile(r"results_y\d{4}m\d{2}")


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic's ``include_name`` hook: the monthly partitions and their indexes are not in the
    models (they are made by this module), so autogenerate and the model-vs-migration check
    leave them out."""
    table = name if type_ == "table" else parent_names.get("table_name")
    return not (table and _PARTITION_NAME.fullmatch(table))


def _is_postgresql(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def _create(connection: Connection, month: date) -> bool:
    """Create ``month``'s partition unless it exists; True when it was created."""
    name = partition_name(month)
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PARTITION_LOCK})
    exists = connection.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one()
    if exists:
        return False
    start, end = month.isoformat(), add_months(month, 1).isoformat()
    connection.execute(text(f"CREATE TABLE {name} PARTITION OF results FOR VALUES FROM ('{start}') TO ('{end}')"))
    return True


def ensure_month(bind: Engine | Connection, moment: datetime) -> None:
    """Make sure the partition ``moment`` falls in exists (PostgreSQL; a no-op on SQLite).

    Cheap after the first call per month and engine: the answer is remembered.
    """
    if not _is_postgresql(bind):
        return
    engine = bind.engine
    month = month_of(moment)
    known = _known.setdefault(engine, set())
    if month in known:
        return
    with engine.begin() as connection:
        _create(connection, month)
    known.add(month)


def ensure_ahead(engine: Engine, months_ahead: int, now: datetime | None = None) -> list[str]:
    """Create the current month's partition and the next ``months_ahead``; returns those created."""
    if months_ahead < 0:
        raise ValueError(f"months_ahead must be >= 0, got {months_ahead}")
    if not _is_postgresql(engine):
        return []
    first = month_of(now or utc_now())
    created = []
    with engine.begin() as connection:
        for i in range(months_ahead + 1):
            if _create(connection, add_months(first, i)):
                created.append(partition_name(add_months(first, i)))
    _known.setdefault(engine, set()).update(add_months(first, i) for i in range(months_ahead + 1))
    return created


def list_partitions(bind: Engine | Connection) -> list[Partition]:
    """The partitions of ``results``, oldest first ([] on SQLite)."""
    if not _is_postgresql(bind):
        return []
    query = text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('results')"
    )

    def read(connection: Connection) -> list[Partition]:
        out = []
        for name, bound in connection.execute(query):
            found = _BOUND.search(bound or "")
            if found is None:  # a DEFAULT partition someone added by hand: not ours to manage
                continue
            start, end = (datetime.fromisoformat(v).date() for v in found.groups())
            out.append(Partition(name, start, end))
        return sorted(out, key=lambda p: p.start)

    if isinstance(bind, Connection):
        return read(bind)
    with bind.connect() as connection:
        return read(connection)


def retention_horizon(keep_months: int, now: datetime | None = None) -> date:
    """The first day kept by ``keep_months`` (the current month counts as one)."""
    if keep_months < 1:
        raise ValueError(f"keep_months must be >= 1 (the current month is always kept), got {keep_months}")
    return add_months(month_of(now or utc_now()), -(keep_months - 1))


# Keys of results received before the horizon, at or below their epoch's watermark.
_DELETE_KEYS = text(
    "DELETE FROM result_keys WHERE received_at < :horizon AND seq <= ("
    "SELECT o.acked_through FROM outbox_epochs o "
    "WHERE o.device_id = result_keys.device_id AND o.epoch = result_keys.epoch)"
)


def apply_retention(engine: Engine, keep_months: int, now: datetime | None = None) -> RetentionReport:
    """Delete every result received before ``retention_horizon(keep_months)``.

    PostgreSQL: each partition entirely before the horizon is detached (``CONCURRENTLY``: ingest
    goes on) and dropped. SQLite: ``DELETE``. Then the keys the watermark now answers for.
    """
    horizon = retention_horizon(keep_months, now)
    cutoff = datetime(horizon.year, horizon.month, 1)
    report = RetentionReport(engine.dialect.name, horizon)
    if _is_postgresql(engine):
        old = [p for p in list_partitions(engine) if p.end <= horizon]
        # DETACH … CONCURRENTLY cannot run inside a transaction block.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for partition in old:
                rows = connection.execute(text(f"SELECT count(*) FROM {partition.name}")).scalar_one()
                connection.execute(text(f"ALTER TABLE results DETACH PARTITION {partition.name} CONCURRENTLY"))
                connection.execute(text(f"DROP TABLE {partition.name}"))
                report.dropped_partitions.append(partition.name)
                report.deleted_results += int(rows)
    else:
        with engine.begin() as connection:
            deleted = connection.execute(text("DELETE FROM results WHERE received_at < :c"), {"c": cutoff})
            report.deleted_results = int(deleted.rowcount)
    with engine.begin() as connection:
        report.deleted_keys = int(connection.execute(_DELETE_KEYS, {"horizon": cutoff}).rowcount)
    return report
