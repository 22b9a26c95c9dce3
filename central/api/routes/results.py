"""``POST /v1/results:batch``: devices deliver classified results (docs/DESIGN.md §5)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError

from central.api.deps import JsonBody, OwnDevice, SessionDep, SettingsDep
from central.api.errors import format_errors
from central.api.responses import DEVICE_ERRORS, error
from central.schemas import BatchAck, ResultsBatchCreate
from central.services.errors import ServiceError
from central.services.results import ingest

router = APIRouter(tags=["results"])


@router.post(
    "/results:batch",
    response_model=BatchAck,
    responses={**DEVICE_ERRORS, 409: error("a stored seq of this epoch was replayed with other content")},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ResultsBatchCreate"}}},
            "description": "May be sent with Content-Encoding: gzip.",
        }
    },
)
def post_results_batch(
    request: Request,
    device: OwnDevice,
    session: SessionDep,
    settings: SettingsDep,
    body: JsonBody,
) -> BatchAck:
    """Store a batch once per ``(device_id, epoch, seq)``; answer the epoch's contiguous watermark."""
    # JsonBody (gzip, size bound) reads the body instead of FastAPI, so the batch is validated
    # here, after the cheap count check.
    metrics = request.app.state.metrics
    results = body.get("results") if isinstance(body, dict) else None
    try:
        if isinstance(results, list) and len(results) > settings.max_batch_results:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"batch holds {len(results)} results; the limit is "
                f"{settings.max_batch_results} (EDGESEG_MAX_BATCH_RESULTS)",
            )
        try:
            batch = ResultsBatchCreate.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=format_errors(exc.errors())) from exc
        outcome = ingest(
            session,
            device.id,
            batch.results,
            request.app.state.class_cache,
            epoch=batch.epoch,
            backlog=batch.backlog,
            max_future_skew_s=settings.max_future_skew_s,
        )
    except (HTTPException, ServiceError):
        metrics.batches.labels("rejected").inc()
        raise
    metrics.batches.labels("ok").inc()
    metrics.results_stored.inc(outcome.stored)
    metrics.results_duplicate.inc(outcome.duplicates)
    return BatchAck.model_validate(outcome, from_attributes=True)
