"""Requests-per-minute and tokens-per-minute limits, shared by every worker and instance through the database.

Fixed windows of `PYLON_KEYS_RATE_WINDOW` seconds (60 by default). Each process counts locally, with no I/O
on the request path; every `PYLON_KEYS_SYNC_INTERVAL` it adds its new counts to the key's row for the
window (`api_key_rate_windows`, one atomic upsert) and reads back every key's totals for the window. A
request is refused when the last known total plus what this process admitted since exceeds the limit.

Accuracy: a process learns of other processes' requests within one sync interval, so over one window a key
can be admitted at most `limit + (processes - 1) * (its requests per sync interval)`; once every process
has synced, no further request is admitted until the window ends. The token limit is charged after a
response (tokens are only known then), so one request can overshoot it; the next is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.keys.models import RateWindow

log = structlog.get_logger(__name__)

# Windows older than this many are deleted from the database now and then.
KEEP_WINDOWS = 60


class _Counter:
    __slots__ = ("pending_requests", "pending_tokens", "synced_requests", "synced_tokens")

    def __init__(self) -> None:
        self.synced_requests = 0
        self.synced_tokens = 0
        self.pending_requests = 0
        self.pending_tokens = 0

    @property
    def requests(self) -> int:
        return self.synced_requests + self.pending_requests

    @property
    def tokens(self) -> int:
        return self.synced_tokens + self.pending_tokens


class RateLimiter:
    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.clock = clock
        # (key id, window index) -> counts.
        self._counters: dict[tuple[str, int], _Counter] = {}
        self._syncs = 0

    def window_index(self, now: float | None = None) -> int:
        return int((self.clock() if now is None else now) // self.window)

    def per_window(self, per_minute: int) -> int:
        """A per-minute limit scaled to the window length (the same number with the default 60 s window)."""
        return max(1, math.floor(per_minute * self.window / 60))

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil((self.window_index(now) + 1) * self.window - now))

    def _counter(self, key_id: str, window: int) -> _Counter:
        counter = self._counters.get((key_id, window))
        if counter is None:
            counter = self._counters[(key_id, window)] = _Counter()
        return counter

    def acquire(self, key_id: str, rpm: int | None, tpm: int | None) -> tuple[str, int] | None:
        """Count one request; or, when a budget is spent, return which (`rpm`/`tpm`) and Retry-After."""
        now = self.clock()
        counter = self._counter(key_id, self.window_index(now))
        if rpm is not None and counter.requests >= self.per_window(rpm):
            return "rpm", self.retry_after(now)
        if tpm is not None and counter.tokens >= self.per_window(tpm):
            return "tpm", self.retry_after(now)
        counter.pending_requests += 1
        return None

    def charge_tokens(self, key_id: str, tokens: int) -> None:
        # Called after every request that reported tokens: window_index() and _counter() inlined.
        if tokens > 0:
            key = (key_id, int(self.clock() // self.window))
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter()
            counter.pending_tokens += tokens

    def usage(self, key_id: str) -> tuple[int, int]:
        """Requests and tokens counted for the key in the current window, as far as this process knows."""
        counter = self._counters.get((key_id, self.window_index()))
        return (counter.requests, counter.tokens) if counter else (0, 0)

    async def sync(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Push this process's new counts and pull every process's totals for the current window."""
        current = self.window_index()
        pushed: dict[tuple[str, int], tuple[int, int]] = {
            key: (c.pending_requests, c.pending_tokens)
            for key, c in self._counters.items()
            if c.pending_requests or c.pending_tokens
        }
        async with sessions() as session:
            if pushed:
                rows = [
                    {"key_id": key_id, "window": window, "requests": requests, "tokens": tokens}
                    for (key_id, window), (requests, tokens) in pushed.items()
                ]
                dialect = session.get_bind().dialect.name
                insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
                statement = insert(RateWindow).values(rows)
                statement = statement.on_conflict_do_update(
                    index_elements=[RateWindow.key_id, RateWindow.window],
                    set_={
                        "requests": RateWindow.requests + statement.excluded.requests,
                        "tokens": RateWindow.tokens + statement.excluded.tokens,
                    },
                )
                await session.execute(statement)
            totals = (
                await session.execute(
                    select(RateWindow.key_id, RateWindow.requests, RateWindow.tokens).where(
                        RateWindow.window == current
                    )
                )
            ).all()
            self._syncs += 1
            if self._syncs % 100 == 1:
                await session.execute(delete(RateWindow).where(RateWindow.window < current - KEEP_WINDOWS))
            await session.commit()
        # Requests admitted while the database answered stay pending for the next sync.
        for key, (requests, tokens) in pushed.items():
            counter = self._counters.get(key)
            if counter is not None:
                counter.pending_requests -= requests
                counter.pending_tokens -= tokens
        for key_id, requests, tokens in totals:
            counter = self._counter(key_id, current)
            counter.synced_requests = requests
            counter.synced_tokens = tokens
        for key in [k for k, c in self._counters.items() if k[1] < current and not c.pending_requests]:
            if not self._counters[key].pending_tokens:
                del self._counters[key]
