"""``POST /v1/outcomes``: what actually happened to customers, for accuracy and recall."""

from __future__ import annotations

from fastapi import APIRouter

from central.api.deps import AdminDep, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS
from central.schemas import OutcomesCreate, OutcomesPublic
from central.services import outcomes, stats

router = APIRouter(prefix="/outcomes", tags=["outcomes"])


@router.post("", response_model=OutcomesPublic, responses=ADMIN_ERRORS)
def post_outcomes(body: OutcomesCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> OutcomesPublic:
    """Record outcomes (the newest per customer wins); answer accuracy and per-segment recall."""
    stored = outcomes.record_outcomes(session, body.outcomes)
    return OutcomesPublic(stored=stored, accuracy=stats.accuracy(session, min_customers=settings.small_cell_k))
