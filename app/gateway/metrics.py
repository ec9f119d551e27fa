"""Gateway metrics, labelled by netuid and outcome only (hotkeys are unbounded: never labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MINER_REQUESTS = Counter(
    "pylon_gateway_miner_requests_total",
    "Requests sent to miners by outcome (ok, invalid, error, timeout, refused, cancelled).",
    ("netuid", "outcome"),
)
MINER_LATENCY = Histogram(
    "pylon_gateway_miner_latency_seconds",
    "Time from sending a request to a miner to its whole answer (streams: its first chunk).",
    ("netuid",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MINER_SCORE = Histogram(
    "pylon_gateway_miner_score",
    "Scores given to miners' answers (0 to 1).",
    ("netuid",),
    buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
