"""Upstream proxy metrics, labelled by upstream name (from configuration: bounded), never path or caller."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from app.metrics_buffer import BUFFER

REQUESTS_TOTAL = Counter(
    "pylon_upstream_requests_total",
    "Requests proxied to an upstream, by the status class the caller got (2xx..5xx; 502/504 are Pylon's).",
    ("upstream", "status_class"),
)
FAILURES_TOTAL = Counter(
    "pylon_upstream_failures_total",
    "Requests the upstream did not answer: unreachable (502), timeout (504), broken mid-answer.",
    ("upstream", "kind"),
)
RESPONSE_SECONDS = Histogram(
    "pylon_upstream_response_seconds",
    "Time from sending a request upstream to its answer's head.",
    ("upstream",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DURATION_SECONDS = Histogram(
    "pylon_upstream_duration_seconds",
    "Time from sending a request upstream to the last byte of its answer.",
    ("upstream",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def observe_head(upstream: str, status: int, seconds: float) -> None:
    BUFFER.inc(REQUESTS_TOTAL.labels(upstream, status_class(status)))
    BUFFER.observe(RESPONSE_SECONDS.labels(upstream), seconds)


def observe_failure(upstream: str, kind: str, seconds: float) -> None:
    BUFFER.inc(FAILURES_TOTAL.labels(upstream, kind))
    BUFFER.inc(REQUESTS_TOTAL.labels(upstream, "5xx"))
    BUFFER.observe(DURATION_SECONDS.labels(upstream), seconds)


def observe_done(upstream: str, seconds: float, complete: bool) -> None:
    if not complete:
        BUFFER.inc(FAILURES_TOTAL.labels(upstream, "incomplete"))
    BUFFER.observe(DURATION_SECONDS.labels(upstream), seconds)
