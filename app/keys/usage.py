"""Usage records: one row per request by a key or an Epistula signer, buffered and written in batches.

The middleware runs outside the route: once the downstream app has sent its whole response (for a stream,
after the last chunk) it reads who called (`principal_of`) and what they consumed (`usage_of`), charges the
tokens to the rate limiter and appends a row to the buffer. A background task writes the buffer every
`PYLON_KEYS_USAGE_FLUSH_INTERVAL` seconds or as soon as it holds `PYLON_KEYS_USAGE_BATCH_SIZE` rows; the
lifespan writes what is left on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, cast

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter
from sqlalchemy import Table, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.context import Principal, Usage, principal_of, usage_of
from app.keys.models import ApiKey, UsageRecord

log = structlog.get_logger(__name__)

USAGE_ROWS_WRITTEN = Counter("pylon_key_usage_rows_written_total", "Usage rows written to the database.")
USAGE_ROWS_DROPPED = Counter(
    "pylon_key_usage_rows_dropped_total", "Usage rows dropped because the buffer was full (database down)."
)
RECORDED_KINDS = frozenset({"api_key", "epistula"})


class UsageRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        batch_size: int = 500,
        buffer_max: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self.batch_size = batch_size
        self.buffer_max = buffer_max
        self._rows: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self.batch_ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch_size:
            self.batch_ready.set()

    async def flush(self) -> int:
        """Write every buffered row; on failure keep them (up to the buffer's bound) and re-raise."""
        async with self._lock:
            self.batch_ready.clear()
            rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                await self._write(rows)
            except BaseException:
                self._rows = rows + self._rows
                overflow = len(self._rows) - self.buffer_max
                if overflow > 0:
                    del self._rows[:overflow]
                    USAGE_ROWS_DROPPED.inc(overflow)
                    log.warning("usage_rows_dropped", count=overflow)
                raise
            USAGE_ROWS_WRITTEN.inc(len(rows))
            return len(rows)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        last_used: dict[str, dt.datetime] = {}
        for row in rows:
            if row["kind"] == "api_key":
                last_used[row["key_id"]] = max(
                    row["created_at"], last_used.get(row["key_id"], row["created_at"])
                )
        # A Core insert of the table, not the ORM entity: an executemany with no per-row ORM bookkeeping,
        # which at thousands of requests per second was a large share of the worker's time.
        statement = insert(cast(Table, UsageRecord.__table__))
        async with self._sessions() as session:
            for start in range(0, len(rows), self.batch_size):
                await session.execute(statement, rows[start : start + self.batch_size])
            for key_id, used_at in last_used.items():
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < used_at))
                    .values(last_used_at=used_at)
                )
            await session.commit()


def account(
    runtime: Any,
    principal: Principal | None,
    usage: Usage | None,
    method: str,
    route: str,
    status: int,
    latency: float,
) -> None:
    """Charge a finished request's tokens to its key's budget and record its usage (keys and signers only)."""
    if principal is None or principal.kind not in RECORDED_KINDS:
        return
    now = dt.datetime.now(dt.UTC)
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    row = {
        "key_id": principal.id,
        "kind": principal.kind,
        "day": now.date(),
        "created_at": now,
        "method": method,
        "route": route,
        "status": status,
        "latency_ms": round(latency * 1000, 3),
        "model": usage.model if usage else None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }
    if principal.kind == "api_key":
        runtime.limiter.charge_tokens(principal.id, prompt + completion)
    runtime.usage.record(row)


def usage_middleware(app: ASGIApp) -> ASGIApp:
    """Record each keyed request once its response is complete, and charge its tokens."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            runtime = scope["app"].state.get("keys_runtime")
            if runtime is not None:
                account(
                    runtime,
                    principal_of(scope),
                    usage_of(scope),
                    scope["method"],  # type: ignore[typeddict-item]
                    scope.get("path_template") or "<unmatched>",
                    status,
                    time.perf_counter() - started,
                )

    return middleware


async def usage_report_rows(
    session: AsyncSession, key_id: str, since: dt.date
) -> list[tuple[dt.date, int, int, int, int]]:
    """(day, requests, errors, prompt tokens, completion tokens) per day since `since`."""
    errors = func.sum(case((UsageRecord.status >= 400, 1), else_=0))
    result = await session.execute(
        select(
            UsageRecord.day,
            func.count(),
            errors,
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
        )
        .where(UsageRecord.key_id == key_id, UsageRecord.day >= since)
        .group_by(UsageRecord.day)
        .order_by(UsageRecord.day)
    )
    return [(day, int(n), int(e or 0), int(p), int(c)) for day, n, e, p, c in result.all()]
