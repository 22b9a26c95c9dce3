"""API shapes of the privacy routes (issue 15): noised reports, budgets, federated statistics,
erasures. Same conventions as ``central.schemas`` (``…Create`` in, ``…Public`` out)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt, model_validator

from central.schemas import ModelVersion, Name, Text, UtcDatetime

__all__ = [
    "BudgetPublic",
    "ErasureConfirm",
    "ErasureCreate",
    "ErasurePending",
    "ErasurePublic",
    "PrivateReportCreate",
    "PrivateReportPublic",
]

# A noisy count: an integer that may be negative (noise is not clamped, so sums stay unbiased).
NoisyCount = Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]
CustomerRef = Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")]


class _In(BaseModel):
    model_config = {"extra": "forbid"}


class PrivateReportCreate(_In):
    """One noised release (``edge_runtime.privacy.private_report``)."""

    report_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    device_id: Annotated[Text, Field(min_length=1, max_length=64)]
    model_version: ModelVersion
    day: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="the device's UTC day (informative)")]
    mechanism: Literal["laplace", "gaussian"]
    epsilon: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    delta: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
    sensitivity: Annotated[StrictInt, Field(ge=1, le=1001)]
    histograms: Annotated[
        dict[Name, Annotated[list[NoisyCount], Field(min_length=1, max_length=10000)]], Field(max_length=1000)
    ]
    segments: Annotated[dict[Name, NoisyCount], Field(max_length=1000)]

    @model_validator(mode="after")
    def _consistent(self) -> PrivateReportCreate:
        vectors = len(self.histograms) + (1 if self.segments else 0)
        if vectors == 0:
            raise ValueError("a report needs histograms or segments")
        if self.sensitivity != vectors:
            raise ValueError(
                f"sensitivity {self.sensitivity} must be the number of count vectors ({vectors}): "
                "one row adds one to each histogram and to the segment mix"
            )
        if self.mechanism == "laplace" and self.delta != 0:
            raise ValueError("the Laplace mechanism spends no delta: send 0")
        if self.mechanism == "gaussian" and not (0 < self.delta and self.epsilon <= 1):
            raise ValueError("the Gaussian mechanism needs delta > 0 and epsilon <= 1 per report")
        return self


class BudgetPublic(BaseModel):
    device_id: str
    day: str = Field(description="central's UTC day the budget is counted on")
    epsilon_spent: float
    epsilon_limit: float
    delta_spent: float
    delta_limit: float
    reports: int


class PrivateReportPublic(BaseModel):
    report_id: str
    psi: dict[str, float]
    flagged: list[str]
    threshold: float
    budget: BudgetPublic


class ErasureCreate(_In):
    """Exactly one of ``customer_ref`` (the pseudonym) or ``customer_id`` (a raw id: needs
    ``EDGESEG_PSEUDONYM_SECRET`` at central)."""

    customer_ref: CustomerRef | None = None
    customer_id: Annotated[Text, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ErasureCreate:
        if (self.customer_ref is None) == (self.customer_id is None):
            raise ValueError("give exactly one of customer_ref or customer_id")
        return self


class ErasurePublic(BaseModel):
    """The audit record: that an erasure happened and what it removed, never whose."""

    id: int
    requested_at: UtcDatetime
    completed_at: UtcDatetime | None
    results_deleted: int
    outcomes_deleted: int
    devices: int
    devices_confirmed: int


class ErasurePending(BaseModel):
    id: int
    customer_ref: str


class ErasureConfirm(_In):
    """What the device removed (``edge_runtime.privacy.erase_customer``)."""

    results_deleted: Annotated[StrictInt, Field(ge=0)]
    results_unlinked: Annotated[StrictInt, Field(ge=0)]
    state_deleted: Annotated[StrictInt, Field(ge=0)]
