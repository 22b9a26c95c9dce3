"""Build the central FastAPI app. Nothing is created at import time: ``create_app`` does it.

Run it with ``edgeseg-central serve`` or ``uvicorn --factory central.main:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import OperationalError

from central.api.errors import database_unavailable_handler, request_validation_handler, service_error_handler
from central.api.limits import BodyLimitMiddleware, body_limit_for
from central.api.routes import dashboard, devices, models, outcomes, privacy, results, rollouts, stats
from central.core.config import Settings, get_settings
from central.core.db import Database
from central.core.metrics import Metrics, MetricsMiddleware, exposition
from central.core.migrate import upgrade
from central.schemas import ResultsBatchCreate
from central.services.errors import ServiceError
from central.services.results import ClassCache

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/v1"


def _openapi_with_batch_schema(app: FastAPI) -> dict[str, Any]:
    """The batch route reads its body itself (gzip, size bounds); document the schema anyway."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    batch = ResultsBatchCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in batch.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["ResultsBatchCreate"] = batch
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: ``get_settings()``, i.e. the environment)."""
    settings = settings if settings is not None else get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_url(settings.database_url, pool_size=settings.db_pool_size)
        if settings.auto_migrate:
            upgrade(db.engine)
        app.state.db = db
        try:
            yield
        finally:
            db.dispose()

    app = FastAPI(
        title="edgeseg central",
        version="0.1.0",
        description="Head office: devices sync classified results, fetch signed models, "
        "report drift; head office reads segment mix, drift and accuracy.",
        lifespan=lifespan,
        # Swagger UI and ReDoc fetch their scripts from a CDN: served in development only.
        # /openapi.json stays (clients and the fuzz test read it).
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.class_cache = ClassCache()
    from central.api.routes.dashboard import make_environment

    app.state.templates = make_environment()
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(OperationalError, database_unavailable_handler)
    app.add_exception_handler(ServiceError, service_error_handler)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, prefixes=(API_PREFIX,))
    # Added last, so outermost: a body is bounded before metrics, auth or parsing see it.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for(settings, API_PREFIX))

    for module in (results, models, devices, outcomes, stats, privacy, rollouts):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(dashboard.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(exposition(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi_with_batch_schema(app)  # type: ignore[method-assign]
    return app
