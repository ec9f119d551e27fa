"""Inference metrics, labelled by model and backend (both come from configuration: bounded)."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS_TOTAL = Counter(
    "pylon_inference_requests_total",
    "Inference requests by outcome (ok, client_error, backend_error, unavailable).",
    ("model", "backend", "endpoint", "outcome"),
)
TOKENS_TOTAL = Counter(
    "pylon_inference_tokens_total",
    "Tokens reported by backends.",
    ("model", "backend", "type"),
)
DURATION = Histogram(
    "pylon_inference_duration_seconds",
    "Time from receiving an inference request to its last byte from the backend.",
    ("model", "backend", "endpoint"),
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "pylon_inference_time_to_first_token_seconds",
    "Time from receiving a streamed request to the backend's first chunk.",
    ("model", "backend", "endpoint"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FAILOVERS_TOTAL = Counter(
    "pylon_inference_failovers_total",
    "Backend failures that sent a request on to the next backend (or to a 502/503).",
    ("backend", "reason"),
)
BACKEND_UP = Gauge(
    "pylon_inference_backend_up",
    "1 when the backend is healthy in this worker, 0 while it is cooling down.",
    ("backend",),
    multiprocess_mode="livemin",
)


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """The labelled child of a collector, remembered: `labels()` costs a lock and a dict build per call.

    Labels are model, backend, endpoint and outcome names from configuration, so the cache stays small.
    """
    return metric.labels(*labels)
