"""Prometheus collectors of the apply-weights jobs, updated by the worker."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

JOB_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200)
ATTEMPT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120)
JOB_DURATION = Histogram(
    "pylon_apply_weights_job_duration_seconds",
    "Time from a weights job's creation to its final status.",
    ("status", "netuid", "identity"),
    buckets=JOB_BUCKETS,
)
ATTEMPT_DURATION = Histogram(
    "pylon_apply_weights_attempt_duration_seconds",
    "Duration of one attempt to set or commit weights (status: success or error).",
    ("status", "netuid", "identity"),
    buckets=ATTEMPT_BUCKETS,
)
# Every worker reads the same count from the database; livemax reports it once, from live workers only.
PENDING_JOBS = Gauge(
    "pylon_apply_weights_pending_jobs",
    "Weights jobs waiting for an attempt (pending or running).",
    multiprocess_mode="livemax",
)
