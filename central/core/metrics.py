"""Prometheus metrics, one registry per app (no global state between apps or tests).

With several uvicorn workers (``edgeseg-central serve --workers N``) each process counts its own
requests. ``serve`` then points ``PROMETHEUS_MULTIPROC_DIR`` at an empty folder before the
workers start, prometheus_client writes every worker's values there, and ``/metrics`` answers
the sum over all workers (``exposition``), whichever worker serves the scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["MULTIPROC_ENV", "Metrics", "MetricsMiddleware", "exposition"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition(registry: CollectorRegistry) -> bytes:
    """The text ``/metrics`` answers: this process's registry, or every worker's values summed
    when the workers share a ``PROMETHEUS_MULTIPROC_DIR``."""
    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(registry)
    from prometheus_client import multiprocess

    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeseg_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgeseg_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batches = Counter(
            "edgeseg_result_batches",
            "Result batches by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.results_stored = Counter(
            "edgeseg_results_stored", "Results stored for the first time", registry=self.registry
        )
        self.results_duplicate = Counter(
            "edgeseg_results_duplicate",
            "Results received again (replays) and ignored",
            registry=self.registry,
        )
        self.drift_flags = Counter(
            "edgeseg_drift_flags",
            "Inputs flagged for drift (PSI above threshold)",
            registry=self.registry,
        )


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) counting requests per route template."""

    def __init__(self, app: Any, metrics: Metrics, prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.metrics = metrics
        # FastAPI hands the middleware the router-relative route; labels should carry the full
        # path template, so try the prefixes routers were included with.
        self.prefixes = tuple(sorted(set(prefixes), key=len, reverse=True)) + ("",)

    def template(self, scope: dict[str, Any]) -> str:
        route = scope.get("route")
        path, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
        if path is None or regex is None:
            return "unmatched"
        concrete = str(scope.get("path", ""))
        for prefix in self.prefixes:
            if concrete.startswith(prefix) and regex.match(concrete[len(prefix) :]):
                return prefix + str(path)
        return str(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = self.template(scope)
            self.metrics.requests.labels(scope["method"], template, str(status_holder["status"])).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
