"""Prometheus metrics: module-level collectors, the HTTP metrics middleware and the guarded `/metrics` route.

Under `pylon serve` every granian worker is its own process, so `pylon serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before any worker starts; each worker then writes its
samples to memory-mapped files there and `/metrics` adds up all workers' files, whichever worker answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from litestar import Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from app.auth.scopes import Scope as AuthScope
from app.metrics_buffer import BUFFER

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_LABELS = ("method", "path", "status_code", "app_name")
# The path label of requests no route matched (404, 405): one value, however many paths are probed.
UNMATCHED_PATH = "<unmatched>"

REQUESTS_TOTAL = Counter("pylon_requests_total", "HTTP requests answered.", HTTP_LABELS)
REQUEST_DURATION = Histogram(
    "pylon_request_duration_seconds",
    "HTTP request duration in seconds.",
    HTTP_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUESTS_IN_PROGRESS = Gauge(
    "pylon_requests_in_progress",
    "HTTP requests being processed.",
    ("method", "path", "app_name"),
    multiprocess_mode="livesum",
)
# Labelled children remembered per label values: `.labels()` costs a lock, a tuple and dict work per call.
# The method comes from the client, so the caches stop growing at this size (later values are looked up).
_MAX_CACHED_CHILDREN = 1024


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render_metrics() -> bytes:
    """All samples in Prometheus' text format: every worker's under `pylon serve`, else this process's."""
    BUFFER.flush()
    if multiprocess_enabled():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        # Process metrics cannot be summed across workers; report the answering worker's.
        ProcessCollector(registry=registry)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (granian calls nothing for us; `pylon serve` does at exit)."""
    if multiprocess_enabled():
        prometheus_multiprocess.mark_process_dead(pid)


_http_children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}


def count_request(method: str, template: str, status_code: int, app_name: str, seconds: float) -> None:
    """Count and time one answered HTTP request (buffered, see app.metrics_buffer)."""
    key = (method, template, status_code, app_name)
    children = _http_children.get(key)
    if children is None:
        labels = (method, template, str(status_code), app_name)
        children = (REQUESTS_TOTAL.labels(*labels), REQUEST_DURATION.labels(*labels))
        if len(_http_children) < _MAX_CACHED_CHILDREN:
            _http_children[key] = children
    BUFFER.inc(children[0])
    BUFFER.observe(children[1], seconds)


def http_metrics_middleware_factory(app_name: str) -> Callable[[ASGIApp], ASGIApp]:
    """Count and time every HTTP request, labelled by route template (never the raw path: it would explode).

    `create_app()` wraps this around the whole app rather than listing it in Litestar's `middleware`:
    Litestar runs those only for matched routes, and 404s and 405s must be counted too (as `<unmatched>`).
    """

    def http_metrics_middleware(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status_code = 500
            started = time.perf_counter()

            async def send_wrapper(message: Message) -> None:
                nonlocal status_code
                if message["type"] == "http.response.start":
                    status_code = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                # Litestar's router sets the template on this same scope once it has matched a route.
                template = scope.get("path_template") or UNMATCHED_PATH
                method = scope["method"]  # type: ignore[typeddict-item]
                count_request(method, template, status_code, app_name, time.perf_counter() - started)

        return middleware

    return http_metrics_middleware


_in_progress_gauges: dict[tuple[str, str, str], Any] = {}


def in_progress_gauge(method: str, template: str, app_name: str) -> Any:
    """The in-progress gauge child of one route (cached; see `_MAX_CACHED_CHILDREN`)."""
    key = (method, template, app_name)
    gauge = _in_progress_gauges.get(key)
    if gauge is None:
        gauge = REQUESTS_IN_PROGRESS.labels(*key)
        if len(_in_progress_gauges) < _MAX_CACHED_CHILDREN:
            _in_progress_gauges[key] = gauge
    return gauge


def in_progress_middleware_factory(app_name: str) -> Callable[[ASGIApp], ASGIApp]:
    """Track requests in progress per route; a Litestar middleware, because only there is the template known
    before the handler runs (unmatched requests end at once and are not tracked)."""

    def in_progress_middleware(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            template = scope.get("path_template") or UNMATCHED_PATH
            gauge = in_progress_gauge(scope["method"], template, app_name)  # type: ignore[typeddict-item]
            BUFFER.add_to_gauge(gauge, 1)
            try:
                await app(scope, receive, send)
            finally:
                BUFFER.add_to_gauge(gauge, -1)

        return middleware

    return in_progress_middleware


@get(
    "/metrics",
    include_in_schema=False,
    sync_to_thread=False,
    opt={"scope": AuthScope.METRICS_READ, "metrics_token": True},
)
def metrics_endpoint() -> Response[bytes]:
    """Prometheus metrics: `Authorization: Bearer` with PYLON_METRICS_TOKEN or a key with `metrics:read`."""
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)
