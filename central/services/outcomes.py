"""Outcomes: what actually happened to customers, so accuracy and recall can be measured."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.models import Outcome, utc_now
from central.schemas import OutcomeCreate

__all__ = ["record_outcomes"]


def record_outcomes(session: Session, outcomes: list[OutcomeCreate]) -> int:
    """Upsert outcomes (the newest per customer wins, also within one call); returns how many.

    ``INSERT … ON CONFLICT (customer_ref) DO UPDATE``: both back ends speak it, and a customer
    reported twice keeps one row instead of failing the whole call.
    """
    latest = {o.customer_ref: o.actual_segment for o in outcomes}
    now = utc_now()
    rows = [{"customer_ref": ref, "actual_segment": seg, "recorded_at": now} for ref, seg in latest.items()]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(cast(Table, Outcome.__table__))
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_ref"],
        set_={"actual_segment": stmt.excluded.actual_segment, "recorded_at": now},
    )
    session.connection().execute(stmt, rows)
    session.commit()
    return len(rows)
