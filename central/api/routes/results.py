"""``POST /v1/results:batch``: devices deliver classified results (DESIGN §5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import ValidationError

from central.api.body import read_json_body
from central.api.deps import CurrentDevice, SessionDep, SettingsDep
from central.api.errors import format_errors
from central.api.responses import DEVICE_ERRORS
from central.ingest import BatchRejected, ingest
from central.schemas import BatchAck, ResultsBatchCreate

router = APIRouter(tags=["results"])


async def _batch_body(request: Request, settings: SettingsDep) -> Any:
    return await read_json_body(request, settings.max_body_bytes)


@router.post(
    "/results:batch",
    response_model=BatchAck,
    responses=DEVICE_ERRORS,
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
    device: CurrentDevice,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[Any, Depends(_batch_body)],
) -> BatchAck:
    """Store a batch once per ``(device_id, seq)``; answer the device's contiguous watermark."""
    metrics = request.app.state.metrics
    results = body.get("results") if isinstance(body, dict) else None
    if isinstance(results, list) and len(results) > settings.max_batch_results:
        metrics.batches.labels("rejected").inc()
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch holds {len(results)} results; the limit is "
            f"{settings.max_batch_results} (EDGESEG_MAX_BATCH_RESULTS)",
        )
    try:
        batch = ResultsBatchCreate.model_validate(body)
    except ValidationError as exc:
        metrics.batches.labels("rejected").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=format_errors(exc.errors())) from exc
    if batch.device_id != device.id:
        metrics.batches.labels("rejected").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this token belongs to device {device.id!r}, not {batch.device_id!r}",
        )
    try:
        outcome = ingest(session, device.id, batch.results, request.app.state.class_cache, backlog=batch.backlog)
    except BatchRejected as exc:
        session.rollback()
        metrics.batches.labels("rejected").inc()
        raise HTTPException(exc.status_code, detail=exc.detail) from exc
    metrics.batches.labels("ok").inc()
    metrics.results_stored.inc(outcome.stored)
    metrics.results_duplicate.inc(outcome.duplicates)
    return BatchAck(acked_through=outcome.acked_through, stored=outcome.stored, duplicates=outcome.duplicates)
