"""API shapes: ``…Create`` come in, ``…Public`` go out; table models never leak (STYLE.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

__all__ = [
    "AccuracyPublic",
    "BatchAck",
    "CurrentModelPublic",
    "DeviceCreate",
    "DeviceCreated",
    "DevicePublic",
    "DriftCreate",
    "DriftPublic",
    "ErrorPublic",
    "ModelCreate",
    "ModelPublic",
    "ModelReportCreate",
    "ModelReportPublic",
    "OutcomeCreate",
    "OutcomesCreate",
    "OutcomesPublic",
    "ResultCreate",
    "ResultsBatchCreate",
    "RolloutCreate",
    "RolloutPublic",
    "SegmentMixPublic",
    "SegmentMixRow",
]


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are integers; 1.5, "3" and true are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_utc(value: datetime) -> datetime:
    # Central stores naive UTC; what goes out says so (RFC 3339 needs the offset).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Seq = Annotated[StrictInt, BeforeValidator(_whole_number), Field(gt=0, le=2**62)]
ModelVersion = Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[^/\s]+/[^/\s]+$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0, le=2**53)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    detail: str


class ResultCreate(_In):
    seq: Seq
    customer_ref: Name | None = Field(description="pseudonym of the customer; null if none")
    segment: Name
    probabilities: Annotated[dict[Name, Probability], Field(min_length=1, max_length=1000)]
    model_version: ModelVersion
    classified_at: AwareDatetime


class ResultsBatchCreate(_In):
    """One sync batch. ``backlog`` (optional) is the device's unsynced count after this batch."""

    device_id: Annotated[str, Field(min_length=1, max_length=64)]
    results: list[ResultCreate]
    backlog: Count | None = None


class BatchAck(BaseModel):
    acked_through: int = Field(description="highest seq central holds contiguously from 1")
    stored: int
    duplicates: int


class DeviceCreate(_In):
    store: Name


class DeviceCreated(BaseModel):
    id: str
    store: str
    token: str = Field(description="shown once; central keeps only its sha256")


class DevicePublic(BaseModel):
    id: str
    store: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None
    last_seen_at: UtcDatetime | None
    acked_through: int
    # The table's column is results_count; the API has always called it results.
    results: int = Field(validation_alias="results_count")
    backlog: int | None
    model_version: str | None


ArtifactFileName = Literal["model.onnx", "manifest.json", "manifest.sig", "card.md", "card.html"]


class ModelCreate(_In):
    """An artifact upload: each file base64-encoded; ``rollout_to`` "all", "none" or a store."""

    files: dict[ArtifactFileName, Annotated[str, Field(max_length=64 * 1024 * 1024)]]
    rollout_to: Annotated[str, Field(min_length=1, max_length=128)] = "all"


class RolloutCreate(_In):
    model_version: ModelVersion
    store: Name | None = Field(default=None, description="null rolls out to every store")


class RolloutPublic(BaseModel):
    model_version: str
    store: str | None
    created_at: UtcDatetime


def _file_names(files: Any) -> Any:
    """``Model.files`` holds ``ModelFile`` rows; the API lists their names, sorted."""
    return sorted(getattr(f, "name", f) for f in files) if isinstance(files, list) else files


class ModelPublic(BaseModel):
    model_version: str
    name: str
    version: str
    classes: list[str]
    onnx_sha256: str
    key_id: str
    registered_at: UtcDatetime
    files: Annotated[list[str], BeforeValidator(_file_names)]
    rollouts: list[RolloutPublic]


class CurrentModelPublic(BaseModel):
    model_version: str
    files: dict[str, str] = Field(description="file name -> download URL (device token)")
    sha256: str = Field(description="sha256 of model.onnx, as in the signed manifest")
    file_sha256: dict[str, str]


class ModelReportCreate(_In):
    model_version: ModelVersion
    status: Literal["installed", "refused", "rolled_back"]
    reason: Annotated[str, Field(max_length=2000)] = ""


class ModelReportPublic(BaseModel):
    device_id: str
    model_version: str
    status: str
    reason: str
    created_at: UtcDatetime


class DriftCreate(_In):
    """Per-input histogram counts aligned with the manifest's ``reference`` bins.

    Numbers: one count per bin, then missing. Strings: one per category, then other, missing.
    """

    device_id: Annotated[str, Field(min_length=1, max_length=64)]
    model_version: ModelVersion
    histograms: Annotated[
        dict[Name, Annotated[list[Count], Field(min_length=1, max_length=10000)]],
        Field(min_length=1, max_length=1000),
    ]


class DriftPublic(BaseModel):
    device_id: str
    model_version: str
    rows: int
    psi: dict[str, float]
    flagged: list[str]
    threshold: float


class OutcomeCreate(_In):
    customer_ref: Name
    actual_segment: Name


class OutcomesCreate(_In):
    outcomes: Annotated[list[OutcomeCreate], Field(min_length=1, max_length=10000)]


class AccuracyPublic(BaseModel):
    evaluated: int = Field(description="customers with both a prediction and an outcome")
    accuracy: float | None
    recall: dict[str, float | None]
    support: dict[str, int]


class OutcomesPublic(BaseModel):
    stored: int
    accuracy: AccuracyPublic


class SegmentMixRow(BaseModel):
    store: str
    day: str
    segment: str
    count: int


class SegmentMixPublic(BaseModel):
    rows: list[SegmentMixRow]
