"""Prometheus metrics of the service: requests, latencies, and the items accepted or rejected."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from service.limits import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """One registry per app, so tests (and a second app in a process) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leadscore_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "leadscore_http_request_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.items = Counter(
            "leadscore_items", "Items posted, by kind and outcome", ["kind", "outcome"], registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request under its route template."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


class MetricsMiddleware:
    """Counts every request under its route template (``/v1/leads/{lead_id}/score``), never the raw path:
    ids and tokens stay out of the metrics, and their number stays bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], name, status[0], time.perf_counter() - started)
