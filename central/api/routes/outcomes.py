"""``POST /v1/outcomes``: what actually happened to customers, for accuracy and recall."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.dialects import postgresql, sqlite

from central import stats
from central.api.deps import AdminDep, SessionDep
from central.api.responses import ADMIN_ERRORS
from central.models import Outcome, utc_now
from central.schemas import OutcomesCreate, OutcomesPublic

router = APIRouter(prefix="/outcomes", tags=["outcomes"])


@router.post("", response_model=OutcomesPublic, responses=ADMIN_ERRORS)
def post_outcomes(body: OutcomesCreate, session: SessionDep, _admin: AdminDep) -> OutcomesPublic:
    """Record outcomes (the newest per customer wins); answer accuracy and per-segment recall."""
    latest = {o.customer_ref: o.actual_segment for o in body.outcomes}
    now = utc_now()
    rows = [{"customer_ref": ref, "actual_segment": seg, "recorded_at": now} for ref, seg in latest.items()]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Outcome.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_ref"],
        set_={"actual_segment": stmt.excluded.actual_segment, "recorded_at": now},
    )
    session.connection().execute(stmt, rows)
    session.commit()
    return OutcomesPublic(stored=len(rows), accuracy=stats.accuracy(session))
