"""Per-request metric updates kept as plain numbers in this worker and written to Prometheus once a second.

Why a buffer: in multiprocess mode (`pylon serve`, `PROMETHEUS_MULTIPROC_DIR` set) every `inc()` and
`observe()` takes a lock and writes an mmap'd file (about 1.5 µs each), and the HTTP metrics cost five such
writes per request. Buffered, a request costs a few dict and list operations; the totals reach Prometheus
once a second (`metrics_lifespan`) and before this worker renders `/metrics`, so a scrape may see other
workers' last second a second late.

Why private attributes, and how that is kept from breaking silently: prometheus-client has no public way to
add many observations to a histogram at once. Its public `observe()` records one value (one sum write and
one bucket write), so replaying the buffered values at flush time would keep the per-observation file
writes the buffer exists to avoid, only moved to the flush; and a custom collector with our own counts is
invisible to `MultiProcessCollector`, which reads only the files the library's own value classes write.
So `flush` does what `Histogram.observe()` does internally, for many values at once: it reads a histogram
child's `_upper_bounds` (its bucket bounds, +Inf last) and increments its `_sum` and its per-bucket
`_buckets` values (counts per bucket, not cumulative). pyproject.toml pins prometheus-client to the
releases this was tested against, and tests/test_metrics_buffer.py fails if those attributes change
meaning: buffered observations, flushed, must render exactly as the same observations made directly, by
`generate_latest` and by `MultiProcessCollector`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


class MetricBuffer:
    """Counter increments, histogram observations and gauge moves of labelled children, written by `flush`.

    Pass labelled children (`metric.labels(...)`), never a labelled parent.
    """

    def __init__(self) -> None:
        self._increments: dict[Counter, float] = {}
        # Histogram child -> [sum, count per bucket...] (its buckets, +Inf last).
        self._observations: dict[Histogram, list[float]] = {}
        self._gauges: dict[Gauge, float] = {}

    def inc(self, child: Counter, amount: float = 1.0) -> None:
        self._increments[child] = self._increments.get(child, 0.0) + amount

    def observe(self, child: Histogram, value: float) -> None:
        entry = self._observations.get(child)
        bounds = child._upper_bounds
        if entry is None:
            entry = self._observations[child] = [0.0] * (len(bounds) + 1)
        entry[0] += value
        # The first bucket whose bound is >= value, as Histogram.observe() picks it.
        entry[1 + bisect.bisect_left(bounds, value)] += 1

    def add_to_gauge(self, child: Gauge, delta: float) -> None:
        """A gauge this worker alone moves (in-progress requests): `flush` sets it to its running total."""
        self._gauges[child] = self._gauges.get(child, 0.0) + delta

    def flush(self) -> None:
        increments, self._increments = self._increments, {}
        observations, self._observations = self._observations, {}
        for counter, amount in increments.items():
            counter.inc(amount)
        for histogram, entry in observations.items():
            # Histogram.observe() for many values at once: its sum and per-bucket counts (not cumulative).
            histogram._sum.inc(entry[0])
            for bucket, count in zip(histogram._buckets, entry[1:], strict=True):
                if count:
                    bucket.inc(count)
        for gauge, value in self._gauges.items():
            gauge.set(value)


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
