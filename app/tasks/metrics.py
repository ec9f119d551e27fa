"""Prometheus collectors of the task queue, updated by the worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
# Every worker reads the same counts from the database; livemax reports them once, from live workers only.
QUEUE_DEPTH = Gauge(
    "pylon_tasks_queue_depth",
    "Tasks waiting to run (pending), per priority.",
    ("priority",),
    multiprocess_mode="livemax",
)
TASK_DURATION = Histogram(
    "pylon_tasks_duration_seconds",
    "Time from a task's submission to its final status, by kind and outcome (completed, failed).",
    ("kind", "outcome"),
    buckets=DURATION_BUCKETS,
)
ATTEMPTS = Counter(
    "pylon_tasks_attempts_total",
    "Task attempts, by kind and outcome (ok, retry, failed).",
    ("kind", "outcome"),
)
