"""Privacy routes (issue 15, docs/PRIVACY.md): noised device reports within a daily budget,
federated statistics for a retrain, and customer erasure across central and devices."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from central.api.deps import AdminDep, CurrentDevice, OwnDevice, SessionDep, SettingsDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS, creates, error
from central.privacy_schemas import (
    BudgetPublic,
    ErasureConfirm,
    ErasureCreate,
    ErasurePending,
    ErasurePublic,
    PrivateReportCreate,
    PrivateReportPublic,
)
from central.schemas import ModelVersion
from central.services import drift
from central.services import privacy as service

router = APIRouter(tags=["privacy"])

DeviceId = Annotated[str, Path(min_length=1, max_length=64)]


@creates(
    router,
    "/privacy/reports",
    PrivateReportPublic,
    {**DEVICE_ERRORS, 404: error("model not registered"), 409: error("the device's privacy budget for today is spent")},
)
def post_private_report(
    request: Request, body: PrivateReportCreate, device: OwnDevice, session: SessionDep, settings: SettingsDep
) -> PrivateReportPublic:
    """A noised release of drift histograms and segment mix; 409 beyond the daily ε/δ budget."""
    row, values, spent = service.record_private_report(
        session,
        device,
        body,
        epsilon_limit=settings.dp_epsilon_per_day,
        delta_limit=settings.dp_delta_per_day,
        threshold=settings.drift_psi_threshold,
    )
    flagged = drift.flagged_inputs(values, settings.drift_psi_threshold)
    request.app.state.metrics.drift_flags.inc(len(flagged))
    return PrivateReportPublic(
        report_id=row.report_id, psi=values, flagged=flagged, threshold=settings.drift_psi_threshold, budget=spent
    )


@router.get("/privacy/budgets/{device_id}", response_model=BudgetPublic, responses=ADMIN_ERRORS)
def get_budget(device_id: DeviceId, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> BudgetPublic:
    """What a device has spent of today's privacy budget."""
    return service.budget(
        session, device_id, epsilon_limit=settings.dp_epsilon_per_day, delta_limit=settings.dp_delta_per_day
    )


@router.get("/privacy/federated-stats", responses=ADMIN_ERRORS)
def federated_stats(
    session: SessionDep, _admin: AdminDep, model_version: Annotated[ModelVersion, Query()]
) -> dict[str, Any]:
    """Per-store and fleet input histograms of ``model_version`` from noised reports only."""
    return service.federated_statistics(session, model_version)


@creates(router, "/customers/erase", ErasurePublic, ADMIN_ERRORS)
def erase(body: ErasureCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> ErasurePublic:
    """Erase a customer: results and outcome deleted now, every device queued to erase its
    copies; the answer is the audit record (no ref in it)."""
    if body.customer_ref is not None:
        ref = body.customer_ref
    else:
        assert body.customer_id is not None
        ref = service.resolve_customer_ref(body.customer_id, raw=True, secret=settings.pseudonym_secret)
    erasure = service.erase_customer(session, ref)
    return ErasurePublic.model_validate({**_audit_of(session, erasure.id)})


def _audit_of(session: SessionDep, erasure_id: int) -> dict[str, Any]:
    return next(e for e in service.erasure_audit(session) if e["id"] == erasure_id)


@router.get("/erasures", response_model=list[ErasurePublic], responses=ADMIN_ERRORS)
def list_erasures(session: SessionDep, _admin: AdminDep) -> list[ErasurePublic]:
    """The erasure audit, newest first: that each erasure happened and what it removed."""
    return [ErasurePublic.model_validate(e) for e in service.erasure_audit(session)]


@router.get("/devices/{device_id}/erasures", responses=DEVICE_ERRORS)
def device_erasures(device_id: DeviceId, device: OwnDevice, session: SessionDep) -> dict[str, list[ErasurePending]]:
    """The erasures this device has still to apply to its outbox and customer state."""
    pending = service.pending_erasures(session, device.id)
    return {"erasures": [ErasurePending(id=i, customer_ref=ref) for i, ref in pending]}


@router.post("/devices/{device_id}/erasures/{erasure_id}", responses=DEVICE_ERRORS)
def confirm_erasure(
    device_id: DeviceId,
    erasure_id: Annotated[int, Path(ge=1, le=2**62)],
    body: ErasureConfirm,
    device: OwnDevice,
    session: SessionDep,
    _token: CurrentDevice,
) -> dict[str, Any]:
    """The device applied the erasure; central forgets the ref when every device has."""
    part = service.confirm_erasure(session, device, erasure_id, body)
    return {"erasure_id": erasure_id, "confirmed": True, "late_results_deleted": part.late_results_deleted}
