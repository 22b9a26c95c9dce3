"""API shapes: ``…Create`` come in, ``…Public`` go out; table models never leak (STYLE.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

__all__ = [
    "MODEL_PART_PATTERN",
    "check_model_part",
    "AccuracyPublic",
    "BatchAck",
    "CurrentModelPublic",
    "DeviceCreate",
    "DeviceCreated",
    "DeviceEventCreate",
    "DeviceEventPublic",
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
    "RollbackCreate",
    "RollbackOrder",
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


# A model name or version: a single safe path component (docs/DESIGN.md §5). Devices make folders
# from them, so "x/.." or "toy-seg/." must never be registered, offered or served.
MODEL_PART_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def check_model_part(value: str, what: str = "name") -> str:
    """``value`` if it is a safe model name/version, else ValueError naming ``what``."""
    if not MODEL_PART_PATTERN.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"model {what} {value!r} must match [A-Za-z0-9._-]+ and not be '.' or '..'")
    return value


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL (it would be a 500), and no identifier needs one.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _model_version(value: str) -> str:
    """``<name>/<version>``, each part a safe folder name (devices use them as paths)."""
    name, sep, version = value.partition("/")
    if not sep:
        raise ValueError("must be '<name>/<version>'")
    check_model_part(name, "name")
    check_model_part(version, "version")
    return value


def _utc_representable(value: datetime) -> datetime:
    """Refuse times whose UTC value falls outside year 1..9999 (0001-01-01T00:00+14:00)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the range of representable UTC times (years 1 to 9999)") from None
    return value


def _iso_time(value: str) -> str:
    """An ISO 8601 time with an offset, kept verbatim (a signed order is verified over it)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 time such as 2026-11-30T12:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("must carry its UTC offset (e.g. Z)")
    return value


def _strict_probability(value: Any) -> Any:
    # JSON numbers only: "0.7" or true is a client bug, not a probability (no lax coercion).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[Text, Field(min_length=1, max_length=128)]
Seq = Annotated[StrictInt, BeforeValidator(_whole_number), Field(gt=0, le=2**62)]
ModelVersion = Annotated[Text, Field(min_length=3, max_length=200), AfterValidator(_model_version)]
Probability = Annotated[float, BeforeValidator(_strict_probability), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0, le=2**53)]
# An outbox's epoch: 32 lowercase hex characters (a uuid4 hex); "" is the legacy epoch of a
# device that predates epochs.
Epoch = Annotated[str, Field(pattern=r"^([0-9a-f]{32})?$")]
ClassifiedAt = Annotated[AwareDatetime, AfterValidator(_utc_representable)]


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
    classified_at: ClassifiedAt


class ResultsBatchCreate(_In):
    """One sync batch. ``backlog`` (optional) is the device's unsynced count after this batch.

    ``epoch`` names the device's outbox (absent: the legacy epoch ""); seqs are per epoch.
    """

    device_id: Annotated[Text, Field(min_length=1, max_length=64)]
    epoch: Epoch = ""
    results: list[ResultCreate]
    backlog: Count | None = None


class BatchAck(BaseModel):
    acked_through: int = Field(description="highest seq of this epoch central holds contiguously from 1")
    stored: int
    duplicates: int
    epoch: str = Field(description="the epoch the batch was stored under (echoed)")


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
    acked_through: int = Field(description="the watermark of the device's current epoch")
    epoch: str = Field(description="the outbox epoch of the device's newest batch")
    # The table's column is results_count; the API has always called it results.
    results: int = Field(validation_alias="results_count")
    backlog: int | None
    model_version: str | None


ArtifactFileName = Literal["model.onnx", "model_float.onnx", "manifest.json", "manifest.sig", "card.md", "card.html"]


class ModelCreate(_In):
    """An artifact upload: each file base64-encoded; ``rollout_to`` "all", "none" or a store."""

    files: dict[ArtifactFileName, Annotated[str, Field(max_length=64 * 1024 * 1024)]]
    rollout_to: Annotated[Text, Field(min_length=1, max_length=128)] = "all"
    create_store: bool = Field(default=False, description="allow rolling out to a store with no devices yet")


class RolloutCreate(_In):
    model_version: ModelVersion
    store: Name | None = Field(default=None, description="null rolls out to every store")
    create_store: bool = Field(default=False, description="allow a store with no devices yet (else 422)")


class RollbackOrder(_In):
    """A signed order to go back from one version to an older one (docs/DESIGN.md §5).

    Signed by the factory key over ``json.dumps(order without signature, sort_keys=True,
    separators=(",", ":"))``; devices verify it themselves with the same trusted key.
    """

    kind: Literal["rollback"]
    from_version: ModelVersion
    to_version: ModelVersion
    issued_at: Annotated[str, Field(max_length=64), AfterValidator(_iso_time)]
    order_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    signature: Annotated[str, Field(min_length=1, max_length=200)]


class RollbackCreate(_In):
    order: RollbackOrder
    store: Name | None = Field(default=None, description="null rolls every store back")


class RolloutPublic(BaseModel):
    model_version: str
    store: str | None
    created_at: UtcDatetime
    rollback_order: dict[str, Any] | None = None


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
    rollback: dict[str, Any] | None = Field(
        default=None, description="the signed rollback order, for a device running its from_version"
    )


class ModelReportCreate(_In):
    model_version: ModelVersion
    status: Literal["installed", "refused", "rolled_back"]
    reason: Annotated[Text, Field(max_length=2000)] = ""


class ModelReportPublic(BaseModel):
    device_id: str
    model_version: str
    status: str
    reason: str
    created_at: UtcDatetime


class DeviceEventCreate(_In):
    """Something a device reports about itself; ``outbox_quarantined``: it found its outbox
    corrupt, moved it aside (never deleted) and started ``epoch_new``."""

    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    epoch_old: Epoch | None = None
    epoch_new: Epoch | None = None
    at: ClassifiedAt
    detail: Annotated[Text, Field(max_length=2000)] = ""


class DeviceEventPublic(BaseModel):
    device_id: str
    kind: str
    epoch_old: str | None
    epoch_new: str | None
    at: UtcDatetime
    detail: str
    created_at: UtcDatetime


class DriftCreate(_In):
    """Per-input histogram counts aligned with the manifest's ``reference`` bins.

    Numbers: one count per bin, then missing. Strings: one per category, then other, missing.
    """

    device_id: Annotated[Text, Field(min_length=1, max_length=64)]
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
    suppressed: list[str] = Field(
        default_factory=list, description="segments with fewer outcomes than EDGESEG_SMALL_CELL_K (not shown)"
    )


class OutcomesPublic(BaseModel):
    stored: int
    accuracy: AccuracyPublic


class DeviceOutcomesPublic(BaseModel):
    """What a device learns back from its outcome report: only how many were stored."""

    stored: int


class SegmentMixRow(BaseModel):
    store: str
    day: str
    segment: str
    count: int


class SegmentMixPublic(BaseModel):
    rows: list[SegmentMixRow]
    suppressed: int = Field(default=0, description="cells of fewer than min_customers customers, left out")
    min_customers: int = 1
