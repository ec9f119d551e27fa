"""The per-process side of keys: cache, rate limiter, usage buffer, Epistula verifier, background sync.

One `KeysRuntime` lives on `app.state.keys_runtime` in each worker. Its sync task, every
`PYLON_KEYS_SYNC_INTERVAL`:
- reads new rows of the change feed and drops those keys from the cache (revocation, expiry and limit
  changes made by another worker, another instance or the CLI take effect within about one interval);
- pushes this process's rate counts and pulls the totals of all processes (see app/keys/ratelimit.py).
Its flush task upserts usage buckets (app/keys/usage_buffer.py); the lifespan's exit writes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.context import Principal, Usage
from app.auth.epistula import EpistulaVerifier, StaticHotkeyDirectory
from app.keys.cache import KeyCache
from app.keys.models import KeyChange
from app.keys.ratelimit import RateLimiter
from app.keys.service import KeyService, utcnow
from app.keys.tokens import CachedKey
from app.keys.usage_buffer import UsageRecorder
from app.settings import Settings

log = structlog.get_logger(__name__)

# Callers whose requests are recorded in the usage buckets.
RECORDED_KINDS = frozenset({"api_key", "epistula", "fiber"})
# Change-feed ids are assigned when a transaction starts writing but become visible when it commits, so a
# lower id can appear after a higher one was read (PostgreSQL sequences). Re-reading a margin of ids below
# the highest seen catches those late commits; ids already handled are skipped.
CHANGE_ID_MARGIN = 200
# Change rows older than this are deleted; a process that could not poll for this long clears its cache.
CHANGE_RETENTION_SECONDS = 3600


class KeysRuntime:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(engine, expire_on_commit=False)
        self.cache = KeyCache(self._load, ttl=settings.keys.cache_ttl)
        self.limiter = RateLimiter(window=settings.keys.rate_window)
        self.usage = UsageRecorder(
            self.sessions,
            batch_size=settings.keys.usage_batch_size,
            buffer_max=settings.keys.usage_buffer_max,
        )
        self.epistula = EpistulaVerifier(settings.epistula, default_netuid=settings.chain.netuid)
        self._last_change_id = 0
        self._handled_changes: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Loops check this too: on Python 3.11 `wait_for` can swallow a cancel that races with its inner
        # wait finishing (an event set just then), which would leave a cancelled loop running forever.
        self._stopping = False
        # Event-loop time of the last successful change poll (set in start()).
        self._last_poll_ok = 0.0

    async def _load(self, key_id: str) -> CachedKey | None:
        async with self.sessions() as session:
            return await KeyService(session).load(key_id)

    def account(
        self,
        principal: Principal,
        usage: Usage | None,
        method: str,
        route: str,
        status: int,
        latency: float,
    ) -> None:
        """Account one finished request: charge its tokens to the key's rate limit and add it to its usage
        bucket. `latency` is in seconds. The admin and metrics tokens' requests are not recorded."""
        if principal.kind not in RECORDED_KINDS:
            return
        if usage is None:
            model, prompt_tokens, completion_tokens = "", 0, 0
        else:
            model = usage.model or ""
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
            if principal.kind == "api_key" and (prompt_tokens or completion_tokens):
                self.limiter.charge_tokens(principal.id, prompt_tokens + completion_tokens)
        self.usage.record(
            principal.id,
            principal.kind,
            method,
            route,
            status,
            model,
            prompt_tokens,
            completion_tokens,
            latency * 1000.0,
        )

    def changed(self, key_id: str) -> None:
        """This process changed the key: forget it now rather than at the next poll."""
        self.cache.invalidate(key_id)

    async def poll_changes(self) -> int:
        """Drop every key named in new change rows from the cache; returns how many were new."""
        low = max(0, self._last_change_id - CHANGE_ID_MARGIN)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(KeyChange.id, KeyChange.key_id).where(KeyChange.id > low).order_by(KeyChange.id)
                )
            ).all()
        fresh = 0
        for change_id, key_id in rows:
            if change_id in self._handled_changes:
                continue
            self._handled_changes.add(change_id)
            self.cache.invalidate(key_id)
            self._last_change_id = max(self._last_change_id, change_id)
            fresh += 1
        floor = self._last_change_id - CHANGE_ID_MARGIN
        self._handled_changes = {i for i in self._handled_changes if i > floor}
        return fresh

    async def start(self) -> None:
        async with self.sessions() as session:
            self._last_change_id = int(await session.scalar(select(func.max(KeyChange.id))) or 0)
            cutoff = utcnow() - dt.timedelta(seconds=CHANGE_RETENTION_SECONDS)
            await session.execute(delete(KeyChange).where(KeyChange.changed_at < cutoff))
            await session.commit()
        self._last_poll_ok = asyncio.get_running_loop().time()
        self._tasks = [
            asyncio.create_task(
                self._every(self.settings.keys.sync_interval, self.sync_once), name="keys_sync"
            ),
            asyncio.create_task(self._flush_loop(), name="keys_usage_flush"),
        ]

    async def sync_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.poll_changes()
            self._last_poll_ok = loop.time()
        except Exception as exc:
            log.warning("key_changes_poll_failed", error=f"{type(exc).__name__}: {exc}")
            if loop.time() - self._last_poll_ok > self.settings.keys.cache_ttl:
                # Blind for longer than a cache entry lives: no cached key may outlive that.
                self.cache.clear()
        try:
            await self.limiter.sync(self.sessions)
        except Exception as exc:
            log.warning("rate_limit_sync_failed", error=f"{type(exc).__name__}: {exc}")

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping:
            await asyncio.sleep(interval)
            await step()

    async def _flush_loop(self) -> None:
        interval = self.settings.keys.usage_flush_interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.usage.batch_ready.wait(), timeout=interval)
            try:
                await self.usage.flush()
            except Exception as exc:
                log.warning(
                    "usage_flush_failed", error=f"{type(exc).__name__}: {exc}", buffered=len(self.usage)
                )

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        self._tasks = []
        # A clean shutdown loses nothing: the last usage buckets and rate counts are written.
        try:
            written = await self.usage.flush()
            await self.limiter.sync(self.sessions)
            log.info("keys_shutdown_flushed", usage_buckets=written)
        except Exception as exc:
            log.error(
                "keys_shutdown_flush_failed",
                error=f"{type(exc).__name__}: {exc}",
                lost_buckets=len(self.usage),
                lost_requests=self.usage.pending_requests,
            )


def keys_lifespan(engine: AsyncEngine) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """The lifespan hook: a KeysRuntime on `app.state.keys_runtime`; a hotkey directory unless one is set."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        runtime = KeysRuntime(settings, engine)
        app.state.keys_runtime = runtime
        if app.state.get("hotkey_directory") is None:
            app.state.hotkey_directory = StaticHotkeyDirectory.from_settings(settings.epistula)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return lifespan
