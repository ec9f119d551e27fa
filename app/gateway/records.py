"""Miner records: in memory per worker for routing, written to the database in buffered batches.

Nothing touches the database per request. Each worker folds its observations into its in-memory records
and, every `PYLON_GATEWAY_FLUSH_INTERVAL` seconds (2 s), writes every miner it saw with one executemany
upsert, then reads its subnets' rows back (one SELECT), so it routes on every worker's and instance's
observations at most one interval late. A crash loses at most one interval of this worker's observations.

Moving averages merge exactly across workers: an exponential average is linear, so k observations
x_1..x_k folded into a stored average m give m * (1-a)^k + sum(a (1-a)^(k-i) x_i). Each worker keeps that
decay and that sum since its last flush, and the upsert applies them to whatever the row holds by then
(`score_ema = score_ema * decay + partial`), whichever worker wrote in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.gateway.models import MinerRecord
from app.gateway.schemas import MinerView

log = structlog.get_logger(__name__)
table = cast(Table, MinerRecord.__table__)
# Times to first chunk kept per miner for its hedge delay (its p90).
TTFC_SAMPLES = 32


class Average:
    """An exponential moving average stored elsewhere (`base`), plus what this worker added since."""

    __slots__ = ("alpha", "base", "decay", "partial")

    def __init__(self, alpha: float, base: float | None = None) -> None:
        self.alpha = alpha
        self.base = base
        self.decay = 1.0
        self.partial = 0.0

    def add(self, value: float) -> None:
        self.decay *= 1.0 - self.alpha
        self.partial = self.partial * (1.0 - self.alpha) + self.alpha * value

    @property
    def pending(self) -> bool:
        return self.decay < 1.0

    @property
    def value(self) -> float | None:
        if self.base is not None:
            return self.base * self.decay + self.partial
        if not self.pending:
            return None
        # No stored value yet: the weighted mean of this worker's observations.
        return self.partial / (1.0 - self.decay)

    def rebase(self, base: float | None) -> None:
        self.base, self.decay, self.partial = base, 1.0, 0.0


class MinerStats:
    """One miner as this worker knows it: stored totals plus unflushed deltas."""

    __slots__ = (
        "d_failures",
        "d_requests",
        "d_successes",
        "failures",
        "hotkey",
        "last_seen",
        "latency",
        "netuid",
        "requests",
        "score",
        "successes",
        "ttfc",
        "uid",
    )

    def __init__(self, netuid: int, hotkey: str, alpha: float) -> None:
        self.netuid = netuid
        self.hotkey = hotkey
        self.uid = -1
        self.requests = self.successes = self.failures = 0
        self.d_requests = self.d_successes = self.d_failures = 0
        self.score = Average(alpha)
        self.latency = Average(alpha)
        self.last_seen: float | None = None
        self.ttfc: deque[float] = deque(maxlen=TTFC_SAMPLES)

    @property
    def dirty(self) -> bool:
        return bool(self.d_requests)

    @property
    def total_requests(self) -> int:
        return self.requests + self.d_requests

    def view(self) -> MinerView:
        return MinerView(
            netuid=self.netuid,
            hotkey=self.hotkey,
            uid=self.uid,
            requests=self.requests + self.d_requests,
            successes=self.successes + self.d_successes,
            failures=self.failures + self.d_failures,
            score=self.score.value,
            latency=self.latency.value,
            last_seen=self.last_seen,
        )

    def ttfc_p90(self) -> float | None:
        if len(self.ttfc) < 4:
            return None
        ordered = sorted(self.ttfc)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def upsert_statement(dialect: str) -> Any:
    """INSERT a miner, or ADD its counts and fold its averages into the stored row."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    new, old = statement.excluded, table.c

    def folded(column: Any, excluded: Any, decay: str, partial: str) -> Any:
        # NULL * decay + partial is NULL: a row without a value yet takes this batch's mean.
        return func.coalesce(column * bindparam(decay) + bindparam(partial), excluded)

    return statement.on_conflict_do_update(
        index_elements=[table.c.netuid, table.c.hotkey],
        set_={
            "uid": new.uid,
            "requests": old.requests + new.requests,
            "successes": old.successes + new.successes,
            "failures": old.failures + new.failures,
            "score_ema": folded(old.score_ema, new.score_ema, "score_decay", "score_partial"),
            "latency_ema": folded(old.latency_ema, new.latency_ema, "latency_decay", "latency_partial"),
            "last_seen": func.coalesce(new.last_seen, old.last_seen),
        },
    )


class MinerRecords:
    """Every miner this worker routes to, by (netuid, hotkey); `start()` runs the flush loop."""

    def __init__(self, engine: AsyncEngine | None, *, alpha: float, flush_interval: float) -> None:
        self.engine = engine
        self.alpha = alpha
        self.flush_interval = flush_interval
        self._stats: dict[tuple[int, str], MinerStats] = {}
        self._netuids: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._upsert = upsert_statement(engine.dialect.name) if engine is not None else None
        self._lock = asyncio.Lock()

    def get(self, netuid: int, hotkey: str) -> MinerStats:
        key = (netuid, hotkey)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = MinerStats(netuid, hotkey, self.alpha)
            self._netuids.add(netuid)
        return stats

    def peek(self, netuid: int, hotkey: str) -> MinerStats | None:
        return self._stats.get((netuid, hotkey))

    def record(
        self,
        stats: MinerStats,
        *,
        ok: bool,
        score: float | None,
        latency: float | None,
        ttfc: float | None = None,
    ) -> None:
        """One answer (or failure) of a miner, with its score when known (failures score 0)."""
        stats.d_requests += 1
        if ok:
            stats.d_successes += 1
            if latency is not None:
                stats.latency.add(latency)
        else:
            stats.d_failures += 1
        if score is not None:
            stats.score.add(score)
        if ttfc is not None:
            stats.ttfc.append(ttfc)
        stats.last_seen = time.time()

    def views(self, netuid: int, hotkeys: Iterable[str] | None = None) -> list[MinerView]:
        wanted = None if hotkeys is None else set(hotkeys)
        found = [
            stats.view()
            for (n, hotkey), stats in self._stats.items()
            if n == netuid and (wanted is None or hotkey in wanted)
        ]
        return sorted(found, key=lambda view: (-(view.score if view.score is not None else -1.0), view.uid))

    # ---------------------------------------------------------------------------------- persistence
    async def start(self, netuids: Iterable[int]) -> None:
        self._netuids.update(netuids)
        if self.engine is None:
            return
        try:
            await self.load()
        except Exception as exc:  # the database may be down at start: routing works without history
            log.warning("gateway_records_load_failed", error=str(exc))
        self._task = asyncio.create_task(self._loop(), name="pylon-gateway-records")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception as exc:
                # Deltas stay pending and go with the next flush.
                log.warning("gateway_records_flush_failed", error=str(exc))

    async def flush(self) -> int:
        """Write every miner with unflushed observations, reload the stored rows; returns rows written."""
        if self.engine is None or self._upsert is None:
            return 0
        async with self._lock:
            dirty = [stats for stats in self._stats.values() if stats.dirty]
            rows = [self._row(stats) for stats in dirty]
            # Taken out before the write: observations made while it runs stay pending for the next flush.
            taken = [_take(stats) for stats in dirty]
            if rows:
                try:
                    async with self.engine.begin() as conn:
                        await conn.execute(self._upsert, rows)
                except BaseException:
                    for stats, took in zip(dirty, taken, strict=True):
                        _give_back(stats, took)
                    raise
            await self.load()
            return len(rows)

    def _row(self, stats: MinerStats) -> dict[str, Any]:
        score, latency = stats.score, stats.latency
        return {
            "netuid": stats.netuid,
            "hotkey": stats.hotkey,
            "uid": stats.uid,
            "requests": stats.d_requests,
            "successes": stats.d_successes,
            "failures": stats.d_failures,
            "score_ema": score.partial / (1.0 - score.decay) if score.pending else None,
            "latency_ema": latency.partial / (1.0 - latency.decay) if latency.pending else None,
            "last_seen": stats.last_seen,
            "score_decay": score.decay,
            "score_partial": score.partial,
            "latency_decay": latency.decay,
            "latency_partial": latency.partial,
        }

    async def load(self) -> None:
        """Take the stored rows of this worker's subnets as the base of its in-memory records."""
        if self.engine is None or not self._netuids:
            return
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(table).where(table.c.netuid.in_(sorted(self._netuids))))).all()
        for row in rows:
            data = row._mapping
            stats = self.get(data["netuid"], data["hotkey"])
            stats.requests, stats.successes, stats.failures = (
                data["requests"],
                data["successes"],
                data["failures"],
            )
            if stats.uid < 0:
                stats.uid = data["uid"]
            # Observations made since the flush started stay pending on top of the stored value.
            _rebase_keeping(stats.score, data["score_ema"])
            _rebase_keeping(stats.latency, data["latency_ema"])
            if stats.last_seen is None or (data["last_seen"] or 0) > stats.last_seen:
                stats.last_seen = data["last_seen"]


def _rebase_keeping(average: Average, base: float | None) -> None:
    average.base = base


_Taken = tuple[int, int, int, tuple[float | None, float, float], tuple[float | None, float, float]]


def _take(stats: MinerStats) -> _Taken:
    """Move a miner's deltas into its stored totals (as the upsert will); what was moved, to undo it."""
    took = (
        stats.d_requests,
        stats.d_successes,
        stats.d_failures,
        (stats.score.base, stats.score.decay, stats.score.partial),
        (stats.latency.base, stats.latency.decay, stats.latency.partial),
    )
    stats.requests += stats.d_requests
    stats.successes += stats.d_successes
    stats.failures += stats.d_failures
    stats.d_requests = stats.d_successes = stats.d_failures = 0
    # Until the reload, the folded value stands in for the stored one.
    stats.score.rebase(stats.score.value)
    stats.latency.rebase(stats.latency.value)
    return took


def _give_back(stats: MinerStats, took: _Taken) -> None:
    """The write failed: the moved deltas are pending again, composed with any made since."""
    requests, successes, failures, score, latency = took
    stats.requests -= requests
    stats.successes -= successes
    stats.failures -= failures
    stats.d_requests += requests
    stats.d_successes += successes
    stats.d_failures += failures
    for average, (base, decay, partial) in ((stats.score, score), (stats.latency, latency)):
        average.partial = partial * average.decay + average.partial
        average.decay = decay * average.decay
        average.base = base


async def stored_views(engine: AsyncEngine, netuid: int) -> list[MinerView]:
    """The stored records of a subnet (the CLI reads them without a running server), best score first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table).where(table.c.netuid == netuid))).all()
    views = [
        MinerView(
            netuid=data["netuid"],
            hotkey=data["hotkey"],
            uid=data["uid"],
            requests=data["requests"],
            successes=data["successes"],
            failures=data["failures"],
            score=data["score_ema"],
            latency=data["latency_ema"],
            last_seen=data["last_seen"],
        )
        for data in (row._mapping for row in rows)
    ]
    return sorted(views, key=lambda view: (-(view.score if view.score is not None else -1.0), view.uid))
