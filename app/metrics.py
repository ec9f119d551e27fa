"""Prometheus metrics: module-level collectors, the HTTP request counts (the edge records them, see
app/http/edge.py) and the guarded `/metrics` route.

Under `pylon serve` every granian worker is its own process, so `pylon serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before any worker starts; each worker then writes its
samples to memory-mapped files there and `/metrics` adds up all workers' files, whichever worker answers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


class MetricBuffer:
    """Per-request increments kept as plain numbers and written to Prometheus in one go (`flush`).

    In multiprocess mode every `inc()`/`observe()` takes a lock and writes an mmap'd file (about 1.5 µs);
    the HTTP metrics cost five such writes per request. Buffered, a request costs a few dict and list
    operations, and the values reach Prometheus once a second (`metrics_lifespan`) and before this worker
    renders `/metrics`: a scrape may see other workers' last second a second late.
    """

    def __init__(self) -> None:
        self._increments: dict[Any, float] = {}
        # Histogram child -> [sum, count per bucket...] (its buckets, +Inf last).
        self._observations: dict[Any, list[float]] = {}
        self._gauges: dict[Any, float] = {}

    def inc(self, child: Any, amount: float = 1.0) -> None:
        self._increments[child] = self._increments.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        entry = self._observations.get(child)
        bounds = child._upper_bounds
        if entry is None:
            entry = self._observations[child] = [0.0] * (len(bounds) + 1)
        entry[0] += value
        # The first bucket whose bound is >= value, as Histogram.observe() picks it.
        entry[1 + bisect.bisect_left(bounds, value)] += 1

    def add_to_gauge(self, child: Any, delta: float) -> None:
        """A gauge this worker alone moves (in-progress requests): `flush` sets it to its running total."""
        self._gauges[child] = self._gauges.get(child, 0.0) + delta

    def flush(self) -> None:
        increments, self._increments = self._increments, {}
        observations, self._observations = self._observations, {}
        for child, amount in increments.items():
            child.inc(amount)
        for child, entry in observations.items():
            # Histogram.observe() for many values at once: its sum and per-bucket counts (not cumulative).
            child._sum.inc(entry[0])
            for bucket, count in zip(child._buckets, entry[1:], strict=True):
                if count:
                    bucket.inc(count)
        for child, value in self._gauges.items():
            child.set(value)


BUFFER = MetricBuffer()


async def flush_every(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        BUFFER.flush()


@asynccontextmanager
async def metrics_lifespan(_app: Any) -> AsyncIterator[None]:
    """Write the buffered metrics once a second, and a last time at shutdown."""
    task = asyncio.create_task(flush_every(1.0))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        BUFFER.flush()


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
    """Count and time one answered HTTP request (buffered, see MetricBuffer)."""
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
