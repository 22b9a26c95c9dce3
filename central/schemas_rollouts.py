"""API shapes of staged rollouts (``central.services.rollouts``): what the dashboard, the CLI's
``--json`` and ``GET /v1/staged-rollouts`` show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["ModelWaitPublic", "RolloutEventPublic", "StagedRolloutPublic"]


class RolloutEventPublic(BaseModel):
    at: datetime
    actor: str
    action: str
    reason: str
    details: dict[str, Any]


class StagedRolloutPublic(BaseModel):
    id: int
    model_version: str
    champion_version: str
    canary_stores: list[str]
    state: str
    watch_s: float
    min_outcomes: int
    tolerance: float
    started_by: str
    started_at: datetime
    decided_at: datetime | None
    events: list[RolloutEventPublic]


class ModelWaitPublic(BaseModel):
    """``GET /v1/models/wait``: what the device's store should run, and whether that differs from
    what it said it runs (the long-poll returns as soon as it does, or at the timeout)."""

    model_version: str | None
    changed: bool
    waited_s: float
