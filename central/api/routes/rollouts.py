"""Staged rollouts (admin) and the devices' long-poll for a model change (issue 12)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query

from central.api.deps import AdminDep, CurrentDevice, SessionDep
from central.api.responses import ADMIN_ERRORS, DEVICE_ERRORS
from central.schemas_rollouts import ModelWaitPublic, StagedRolloutPublic
from central.services import models, rollouts

router = APIRouter(tags=["rollouts"])

#: How often a waiting request re-reads the rollouts (any worker or ``rollout evaluate`` run may
#: have changed them, so the database is the signal, not an in-process event).
WAIT_POLL_S = 0.25
MAX_WAIT_S = 60.0


@router.get("/staged-rollouts", response_model=list[StagedRolloutPublic], responses=ADMIN_ERRORS)
def list_staged_rollouts(session: SessionDep, _admin: AdminDep) -> list[StagedRolloutPublic]:
    """The newest staged rollouts, each with its timeline of audit events."""
    return [StagedRolloutPublic.model_validate(r, from_attributes=True) for r in rollouts.list_rollouts(session)]


@router.get("/models/wait", response_model=ModelWaitPublic, responses=DEVICE_ERRORS)
def wait_for_model(
    device: CurrentDevice,
    session: SessionDep,
    running: str = Query(default="", max_length=200, description="the model version the device runs"),
    timeout: float = Query(default=25.0, ge=0, le=MAX_WAIT_S, description="seconds to wait for a change"),
) -> ModelWaitPublic:
    """Long-poll: returns as soon as the device's store should run something other than
    ``running`` (then the device fetches ``/v1/models/current`` as usual), or after ``timeout``."""
    store = device.store
    started = time.monotonic()
    while True:
        current = models.current_model_for_store(session, store)
        version = None if current is None else current.model_version
        waited = time.monotonic() - started
        if (version is not None and version != running) or waited >= timeout:
            return ModelWaitPublic(
                model_version=version, changed=version is not None and version != running, waited_s=waited
            )
        session.rollback()  # end the read transaction so the next read sees new commits
        time.sleep(min(WAIT_POLL_S, max(timeout - waited, 0.0)))
