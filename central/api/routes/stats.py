"""Stats for head office (admin): segment mix, accuracy, drift; and devices' drift reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from central import stats
from central.api.deps import AdminDep, CurrentDevice, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, error
from central.drift import psi
from central.models import DriftReport, Model, utc_now
from central.registry import reference_vectors
from central.schemas import AccuracyPublic, DriftCreate, DriftPublic, SegmentMixPublic

router = APIRouter(tags=["stats"])


@router.get("/stats/segments", response_model=SegmentMixPublic, responses=ADMIN_ERRORS)
def segment_mix(
    session: SessionDep,
    _admin: AdminDep,
    days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    store: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> SegmentMixPublic:
    """Results per store, UTC day and segment (optionally the last ``days`` days, one store)."""
    return SegmentMixPublic(rows=stats.segment_mix(session, days=days, store=store))


@router.get("/stats/accuracy", response_model=AccuracyPublic, responses=ADMIN_ERRORS)
def accuracy(session: SessionDep, _admin: AdminDep) -> AccuracyPublic:
    return stats.accuracy(session)


@router.get("/stats/drift", response_model=list[DriftPublic], responses=ADMIN_ERRORS)
def drift_overview(session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> list[DriftPublic]:
    """Each device's newest drift report."""
    return [
        DriftPublic(
            device_id=r.device_id,
            model_version=r.model_version,
            rows=r.rows,
            psi=r.psi,
            flagged=sorted(k for k, v in r.psi.items() if v > settings.drift_psi_threshold),
            threshold=settings.drift_psi_threshold,
        )
        for r in stats.latest_drift(session)
    ]


@router.post(
    "/drift",
    response_model=DriftPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**DEVICE_ERRORS, 404: error("model not registered")},
)
def post_drift(
    request: Request,
    body: DriftCreate,
    device: CurrentDevice,
    session: SessionDep,
    settings: SettingsDep,
) -> DriftPublic:
    """PSI per input of the device's histograms against the manifest reference; flag > 0.2."""
    if body.device_id != device.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this token belongs to device {device.id!r}, not {body.device_id!r}",
        )
    model = session.get(Model, body.model_version)
    if model is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"model_version {body.model_version!r} is not registered at central",
        )
    expected = reference_vectors(model.reference)
    values: dict[str, float] = {}
    rows = 0
    for name, counts in body.histograms.items():
        if name not in expected:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"histograms.{name}: {body.model_version} has no reference for this input",
            )
        if len(counts) != len(expected[name]):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"histograms.{name}: {len(counts)} counts, the reference has {len(expected[name])} bins",
            )
        values[name] = psi(expected[name], counts)
        rows = max(rows, sum(counts))
    threshold = settings.drift_psi_threshold
    flagged = sorted(name for name, value in values.items() if value > threshold)
    session.add(
        DriftReport(
            device_id=device.id,
            model_version=body.model_version,
            rows=rows,
            psi=values,
            max_psi=max(values.values()),
            flagged=bool(flagged),
            created_at=utc_now(),
        )
    )
    session.commit()
    request.app.state.metrics.drift_flags.inc(len(flagged))
    return DriftPublic(
        device_id=device.id,
        model_version=body.model_version,
        rows=rows,
        psi=values,
        flagged=flagged,
        threshold=threshold,
    )
