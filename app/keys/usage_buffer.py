"""The usage buffer: per-minute buckets of requests and tokens per key (or Epistula signer), summed in memory.

`KeysRuntime.account()` runs once per finished request (the edge calls it once the whole response has been
sent; for a stream, after the last chunk). It charges the tokens to the key's rate limiter and adds the
request to its bucket (`UsageRecorder.record`): one per (key, kind, UTC minute, method, route template,
status, model), holding request, token and latency counters. That is a dict lookup and a few additions, no
row per request.

A background task writes the buckets every `PYLON_KEYS_USAGE_FLUSH_INTERVAL` seconds, or as soon as
`PYLON_KEYS_USAGE_BATCH_SIZE` buckets are waiting; the lifespan writes what is left on a clean shutdown.
Every worker and instance upserts into the same rows, adding its counts to what is stored, so a bucket in
the database is the sum over all of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from advanced_alchemy.types import DateTimeUTC
from prometheus_client import Counter
from sqlalchemy import Table, bindparam, case, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.keys.models import ApiKey, UsageBucket

log = structlog.get_logger(__name__)

USAGE_BUCKETS_WRITTEN = Counter(
    "pylon_key_usage_buckets_written_total", "Usage buckets (key, minute, route, status, model) upserted."
)
USAGE_BUCKETS_DROPPED = Counter(
    "pylon_key_usage_buckets_dropped_total",
    "Usage buckets dropped because the buffer was full (database down).",
)
USAGE_REQUESTS_DROPPED = Counter(
    "pylon_key_usage_requests_dropped_total", "Requests whose usage was lost with a dropped bucket."
)

# (key id, kind, minute as Unix time // 60, method, route, status, model or '').
BucketKey = tuple[str, str, int, str, str, int, str]


class Bucket:
    """The counters of one bucket in memory; `last_used` is the Unix time of its latest request."""

    __slots__ = (
        "completion_tokens",
        "last_used",
        "latency_ms_max",
        "latency_ms_total",
        "prompt_tokens",
        "requests",
    )

    def __init__(self, prompt_tokens: int, completion_tokens: int, latency_ms: float, now: float) -> None:
        self.requests = 1
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.latency_ms_total = latency_ms
        self.latency_ms_max = latency_ms
        self.last_used = now

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency_ms_total += other.latency_ms_total
        self.latency_ms_max = max(self.latency_ms_max, other.latency_ms_max)
        self.last_used = max(self.last_used, other.last_used)


class UsageRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        batch_size: int = 500,
        buffer_max: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        # Buckets per statement, and how many waiting buckets trigger an early flush.
        self.batch_size = batch_size
        # Most buckets kept in memory while writes fail.
        self.buffer_max = buffer_max
        self.clock = clock
        self._buckets: dict[BucketKey, Bucket] = {}
        self._lock = asyncio.Lock()
        self.batch_ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def pending_requests(self) -> int:
        return sum(bucket.requests for bucket in self._buckets.values())

    def record(
        self,
        key_id: str,
        kind: str,
        method: str,
        route: str,
        status: int,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: float,
    ) -> None:
        """Add one request to its bucket (O(1): a dict lookup and a few additions)."""
        now = self.clock()
        key = (key_id, kind, int(now) // 60, method, route, status, model)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = Bucket(prompt_tokens, completion_tokens, latency_ms, now)
            if len(self._buckets) >= self.batch_size:
                self.batch_ready.set()
            return
        bucket.requests += 1
        bucket.prompt_tokens += prompt_tokens
        bucket.completion_tokens += completion_tokens
        bucket.latency_ms_total += latency_ms
        if latency_ms > bucket.latency_ms_max:
            bucket.latency_ms_max = latency_ms
        bucket.last_used = now

    async def flush(self) -> int:
        """Upsert every waiting bucket; on failure keep them (up to the buffer's bound) and re-raise."""
        async with self._lock:
            self.batch_ready.clear()
            buckets, self._buckets = self._buckets, {}
            if not buckets:
                return 0
            try:
                await self._write(buckets)
            except BaseException:
                self._keep(buckets)
                raise
            USAGE_BUCKETS_WRITTEN.inc(len(buckets))
            return len(buckets)

    def _keep(self, failed: dict[BucketKey, Bucket]) -> None:
        """Merge the buckets of a failed write back in front of those recorded meanwhile; drop the oldest."""
        for key, bucket in self._buckets.items():
            kept = failed.get(key)
            if kept is None:
                failed[key] = bucket
            else:
                kept.merge(bucket)
        self._buckets = failed
        overflow = len(failed) - self.buffer_max
        if overflow > 0:
            oldest = list(failed)[:overflow]
            requests = sum(failed.pop(key).requests for key in oldest)
            USAGE_BUCKETS_DROPPED.inc(overflow)
            USAGE_REQUESTS_DROPPED.inc(requests)
            log.warning("usage_buckets_dropped", buckets=overflow, requests=requests)

    async def _write(self, buckets: dict[BucketKey, Bucket]) -> None:
        rows: list[dict[str, Any]] = []
        last_used: dict[str, float] = {}
        # Sorted, so that concurrent flushes lock rows in the same order (no deadlocks on PostgreSQL).
        for key in sorted(buckets):
            key_id, kind, minute, method, route, status, model = key
            bucket = buckets[key]
            minute_start = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
            rows.append(
                {
                    "key_id": key_id[:64],
                    "kind": kind,
                    "minute": minute_start,
                    "day": minute_start.date(),
                    # Cut to the columns' lengths: on PostgreSQL one over-long value would fail every write.
                    "method": method[:10],
                    "route": route[:300],
                    "status": status,
                    "model": model[:200],
                    "requests": bucket.requests,
                    "prompt_tokens": bucket.prompt_tokens,
                    "completion_tokens": bucket.completion_tokens,
                    "latency_ms_total": bucket.latency_ms_total,
                    "latency_ms_max": bucket.latency_ms_max,
                }
            )
            if kind == "api_key" and bucket.last_used > last_used.get(key_id, 0.0):
                last_used[key_id] = bucket.last_used
        async with self._sessions() as session:
            statement = upsert_statement(session.get_bind().dialect.name)
            for start in range(0, len(rows), self.batch_size):
                await session.execute(statement, rows[start : start + self.batch_size])
            if last_used:
                await session.execute(
                    LAST_USED,
                    [
                        {"key": key_id, "used_at": dt.datetime.fromtimestamp(last_used[key_id], dt.UTC)}
                        for key_id in sorted(last_used)
                    ],
                )
            await session.commit()


def _last_used_statement() -> Any:
    # A Core executemany (one round trip), not an ORM update per key: with aiosqlite each statement is a
    # hop to its thread, and 20 ORM updates cost more than the whole upsert.
    table = cast(Table, ApiKey.__table__)
    used_at = bindparam("used_at", type_=DateTimeUTC(timezone=True))
    return (
        update(table)
        .where(table.c.id == bindparam("key"))
        .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < used_at))
        .values(last_used_at=used_at)
    )


LAST_USED = _last_used_statement()


def upsert_statement(dialect: str) -> Any:
    """INSERT a bucket, or ADD its counters to the stored row: other workers and instances write there too."""
    # The Core table, not the ORM entity: an executemany with no per-row ORM bookkeeping.
    table = cast(Table, UsageBucket.__table__)
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    new, old = statement.excluded, table.c
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={
            "requests": old.requests + new.requests,
            "prompt_tokens": old.prompt_tokens + new.prompt_tokens,
            "completion_tokens": old.completion_tokens + new.completion_tokens,
            "latency_ms_total": old.latency_ms_total + new.latency_ms_total,
            # CASE rather than max()/greatest(), whose names differ between SQLite and PostgreSQL.
            "latency_ms_max": case(
                (new.latency_ms_max > old.latency_ms_max, new.latency_ms_max), else_=old.latency_ms_max
            ),
        },
    )
