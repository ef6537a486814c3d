"""Prometheus metrics: requests and latency by route, index size."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """One registry per app, so several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "citesearch_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "citesearch_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.vectors = Gauge("citesearch_index_vectors", "Vectors in the FAISS index", registry=self.registry)
        self.passages = Gauge(
            "citesearch_passages", "Passages in the serving generation", registry=self.registry
        )
        self.articles = Gauge("citesearch_articles", "Articles in the store", registry=self.registry)
        self.applied_seq = Gauge(
            "citesearch_cluster_applied_seq", "Last change-log entry applied here", registry=self.registry
        )
        self.head_seq = Gauge("citesearch_cluster_head_seq", "Last change-log entry", registry=self.registry)
        self.lag_entries = Gauge(
            "citesearch_cluster_lag_entries",
            "Change-log entries not yet applied here",
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "citesearch_cluster_lag_seconds",
            "Age of the oldest entry not applied here",
            registry=self.registry,
        )
        self.writable = Gauge(
            "citesearch_cluster_writable", "1 when the cluster database answers", registry=self.registry
        )

    def render(self, refresh: Callable[[Metrics], None] | None = None) -> bytes:
        """The text exposition format."""
        if refresh is not None:
            refresh(self)
        return bytes(generate_latest(self.registry))


class MetricsMiddleware:
    """Counts and times every request by its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, name, str(status)).inc()
            self.metrics.latency.labels(method, name).observe(time.perf_counter() - start)
