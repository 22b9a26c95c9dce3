"""Stats for head office (admin): segment mix, accuracy, drift; and devices' drift reports."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status

from central.api.deps import AdminDep, OwnDevice, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, error
from central.models import DriftReport
from central.schemas import AccuracyPublic, DriftCreate, DriftPublic, SegmentMixPublic
from central.services import drift, stats

router = APIRouter(tags=["stats"])


def _drift_public(report: DriftReport, threshold: float) -> DriftPublic:
    """A stored report plus what the row does not hold: the inputs above ``threshold``."""
    return DriftPublic(
        device_id=report.device_id,
        model_version=report.model_version,
        rows=report.rows,
        psi=report.psi,
        flagged=drift.flagged_inputs(report.psi, threshold),
        threshold=threshold,
    )


_MIX_PARAMETERS = ("days", "store", "bucket")


@router.get("/stats/segments", response_model=SegmentMixPublic, responses=ADMIN_ERRORS)
def segment_mix(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminDep,
    days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    store: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    bucket: Annotated[Literal["hour", "day", "week"], Query()] = "day",
) -> SegmentMixPublic:
    """Results per store, UTC ``bucket`` (hour, day or ISO week by its Monday; the row's ``day``
    is the bucket's label) and segment (optionally the last ``days`` days, one store); cells
    of fewer than ``EDGESEG_SMALL_CELL_K`` customers are left out and counted, per bucket."""
    unknown = sorted(set(request.query_params) - set(_MIX_PARAMETERS))
    if unknown:  # a typo (?buckt=hour) must not quietly answer with the default buckets
        raise HTTPException(
            status_code=422, detail=f"unknown query parameter {unknown[0]!r}; this route takes {list(_MIX_PARAMETERS)}"
        )
    k = settings.small_cell_k
    rows, suppressed = stats.segment_mix_suppressed(session, days=days, store=store, min_customers=k, bucket=bucket)
    return SegmentMixPublic(rows=rows, suppressed=suppressed, min_customers=k)


@router.get("/stats/accuracy", response_model=AccuracyPublic, responses=ADMIN_ERRORS)
def accuracy(session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> AccuracyPublic:
    return stats.accuracy(session, min_customers=settings.small_cell_k)


@router.get("/stats/drift", response_model=list[DriftPublic], responses=ADMIN_ERRORS)
def drift_overview(session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> list[DriftPublic]:
    """Each device's newest drift report."""
    return [_drift_public(r, settings.drift_psi_threshold) for r in drift.latest_reports(session)]


@router.post(
    "/drift",
    response_model=DriftPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**DEVICE_ERRORS, 404: error("model not registered")},
)
def post_drift(
    request: Request, body: DriftCreate, device: OwnDevice, session: SessionDep, settings: SettingsDep
) -> DriftPublic:
    """PSI per input of the device's histograms against the manifest reference; flag > 0.2."""
    report = drift.record_drift(session, device, body, threshold=settings.drift_psi_threshold)
    answer = _drift_public(report, settings.drift_psi_threshold)
    request.app.state.metrics.drift_flags.inc(len(answer.flagged))
    return answer
