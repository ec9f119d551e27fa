"""Prometheus metrics: module-level collectors, the HTTP request counts (the edge records them, see
app/http/edge.py) and the guarded `/metrics` route.

Under `pylon serve` every granian worker is its own process, so `pylon serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before any worker starts; each worker then writes its
samples to memory-mapped files there and `/metrics` adds up all workers' files, whichever worker answers.
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Response, get
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


@get(
    "/metrics",
    include_in_schema=False,
    sync_to_thread=False,
    opt={"scope": AuthScope.METRICS_READ, "metrics_token": True},
)
def metrics_endpoint() -> Response[bytes]:
    """Prometheus metrics: `Authorization: Bearer` with PYLON_METRICS_TOKEN or a key with `metrics:read`."""
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)
