"""MetricBuffer against prometheus-client: buffered updates, flushed, render exactly as direct ones.

`MetricBuffer.flush` writes histogram children's private `_upper_bounds`, `_sum` and `_buckets` (see
app/metrics_buffer.py for why). These tests are the guard on that: if a prometheus-client release changes
what those attributes mean, the buffered exposition stops matching the direct one and they fail, in
single-process mode (`generate_latest`) and in multiprocess mode (`MultiProcessCollector`, whose value
classes are chosen when prometheus_client is imported, hence a fresh interpreter per mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.metrics_buffer import MetricBuffer

ROOT = Path(__file__).resolve().parent.parent
# The HTTP duration buckets of app/metrics.py, and small ones where every value and sum is exact in binary,
# so that sums carried over several flushes add up the same in either order.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
EXACT_BUCKETS = (0.25, 0.5, 1, 2.5)
# Observed once (one flush): on, just below and just above bounds, past the last one, zero and +Inf.
HTTP_VALUES = (
    0.0,
    0.0004,
    0.001,
    0.0010001,
    0.0025,
    0.003,
    0.07,
    0.1,
    1.0,
    29.99,
    30.0,
    31.0,
    1e9,
    float("inf"),
)
# Observed over several flushes: each round is one flush of the buffer.
EXACT_ROUNDS = ((0.0, 0.25, 0.125, 0.5, 0.75, 1.0), (2.5, 3.0, 1024.0, -0.5, 0.25), (), (0.5,))


@dataclass
class Children:
    registry: CollectorRegistry
    requests: Counter
    other_requests: Counter
    http_duration: Histogram
    exact_duration: Histogram
    in_progress: Gauge


def children() -> Children:
    registry = CollectorRegistry()
    requests = Counter("t_requests_total", "requests", ("route",), registry=registry)
    http = Histogram("t_http_seconds", "http", ("route",), buckets=HTTP_BUCKETS, registry=registry)
    exact = Histogram("t_exact_seconds", "exact", ("route",), buckets=EXACT_BUCKETS, registry=registry)
    # livesum, as app/metrics.py's in-progress gauge: no pid label, so two processes' views compare.
    gauge = Gauge("t_in_progress", "in progress", ("route",), multiprocess_mode="livesum", registry=registry)
    return Children(
        registry,
        requests.labels("/a"),
        requests.labels("/b"),
        http.labels("/a"),
        exact.labels("/a"),
        gauge.labels("/a"),
    )


def record_round(metrics: Children, round_index: int, buffer: MetricBuffer | None) -> None:
    """One round of updates: made directly when `buffer` is None, else buffered and flushed."""
    inc = buffer.inc if buffer else lambda child, amount=1.0: child.inc(amount)
    observe = buffer.observe if buffer else lambda child, value: child.observe(value)
    move = buffer.add_to_gauge if buffer else lambda child, delta: child.inc(delta)
    if round_index == 0:
        for value in HTTP_VALUES:
            observe(metrics.http_duration, value)
        inc(metrics.requests)
        inc(metrics.requests, 2.5)
        move(metrics.in_progress, 3)
    elif round_index == 1:
        inc(metrics.requests)
        inc(metrics.other_requests, 4)
        move(metrics.in_progress, -1)
        move(metrics.in_progress, -2)
        move(metrics.in_progress, 1)
    for value in EXACT_ROUNDS[round_index]:
        observe(metrics.exact_duration, value)
    if buffer:
        buffer.flush()


def samples(registry: CollectorRegistry) -> list[str]:
    # Creation times differ between two registries built one after the other; every other line must not.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_buffered_updates_render_as_direct_ones() -> None:
    direct, buffered, buffer = children(), children(), MetricBuffer()
    for round_index in range(len(EXACT_ROUNDS)):
        record_round(direct, round_index, None)
        record_round(buffered, round_index, buffer)
        assert samples(buffered.registry) == samples(direct.registry), f"after round {round_index}"
    # A flush with nothing buffered adds nothing (the gauge keeps its total).
    buffer.flush()
    assert samples(buffered.registry) == samples(direct.registry)


def test_nothing_reaches_prometheus_before_a_flush() -> None:
    direct, buffered, buffer = children(), children(), MetricBuffer()
    empty = samples(buffered.registry)
    buffer.observe(buffered.http_duration, 0.01)
    buffer.inc(buffered.requests)
    buffer.add_to_gauge(buffered.in_progress, 1)
    assert samples(buffered.registry) == empty
    direct.http_duration.observe(0.01)
    direct.requests.inc()
    direct.in_progress.inc()
    buffer.flush()
    assert samples(buffered.registry) == samples(direct.registry)


def multiprocess_exposition(tmp_path: Path, mode: str) -> str:
    folder = tmp_path / mode
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_metrics_buffer", mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def families(exposition: str) -> list[str]:
    """The exposition's metric families, sorted: MultiProcessCollector lists them in the order the
    filesystem lists its files, whose names hold the pid, so two processes' orders may differ."""
    return sorted("# HELP " + block for block in exposition.split("# HELP ") if block)


def test_buffered_updates_render_as_direct_ones_across_processes(tmp_path: Path) -> None:
    direct = multiprocess_exposition(tmp_path, "direct")
    buffered = multiprocess_exposition(tmp_path, "buffered")
    assert "t_http_seconds_bucket" in direct and "t_in_progress" in direct
    assert families(buffered) == families(direct)


def main(mode: str) -> None:
    """In a fresh interpreter with PROMETHEUS_MULTIPROC_DIR set: record every round, print all files' view."""
    from prometheus_client import multiprocess

    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "run with PROMETHEUS_MULTIPROC_DIR set"
    metrics = children()
    buffer = MetricBuffer() if mode == "buffered" else None
    for round_index in range(len(EXACT_ROUNDS)):
        record_round(metrics, round_index, buffer)
    view = CollectorRegistry()
    multiprocess.MultiProcessCollector(view)
    sys.stdout.write(generate_latest(view).decode())


if __name__ == "__main__":
    main(sys.argv[1])
