"""Usage buckets on real databases: aggregation, adding upserts from two writers, failed flushes, reports."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.context import Principal, Usage
from app.db import create_engine
from app.keys.models import ApiKey, UsageBucket
from app.keys.runtime import KeysRuntime
from app.keys.schemas import KeyCreate
from app.keys.service import KeyService
from app.keys.usage_buffer import UsageRecorder
from app.settings import Settings
from tests.conftest import migrate

# 1_800_000_000 is 2027-01-15 08:00:00 UTC, the start of a minute.
T0 = 1_800_000_000.0
KEY = Principal(kind="api_key", id="k1", scopes=frozenset({"inference"}))
SIGNER = Principal(kind="epistula", id="5SignerHotkey", scopes=frozenset({"inference"}))
ADMIN = Principal(kind="admin_token", id="admin", scopes=frozenset({"inference"}))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request: pytest.FixtureRequest, settings_factory: Any) -> Settings:
    """Migrated settings on a SQLite file, then on a fresh PostgreSQL database."""
    env = {"PYLON_DB_URL": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    settings: Settings = settings_factory(**env)
    migrate(settings)
    return settings


@pytest.fixture
async def engine(db_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_settings)
    yield engine
    await engine.dispose()


def sessions_of(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def stored(engine: AsyncEngine) -> list[UsageBucket]:
    async with sessions_of(engine)() as session:
        query = select(UsageBucket).order_by(UsageBucket.minute, UsageBucket.status, UsageBucket.model)
        return list((await session.scalars(query)).all())


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_many_requests_make_few_buckets(engine: AsyncEngine) -> None:
    clock = Clock(T0 + 5)
    recorder = UsageRecorder(sessions_of(engine), clock=clock)
    for i in range(600):
        # 600 requests over two minutes, two statuses and a model or none: 2 x 2 x 2 = 8 buckets.
        clock.now = T0 + 5 + (60 if i >= 300 else 0)
        status = 429 if i % 3 == 0 else 200
        model = "m" if i % 2 == 0 else ""
        recorder.record("k1", "api_key", "POST", "/v1/chat/completions", status, model, 2, 3, float(i % 7))
    assert len(recorder) == 8 and recorder.pending_requests == 600
    assert await recorder.flush() == 8
    assert len(recorder) == 0
    buckets = await stored(engine)
    assert len(buckets) == 8
    assert sum(b.requests for b in buckets) == 600
    assert sum(b.prompt_tokens for b in buckets) == 1200 and sum(b.completion_tokens for b in buckets) == 1800
    first_minute = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
    assert {b.minute for b in buckets} == {first_minute, first_minute + dt.timedelta(minutes=1)}
    assert {b.day for b in buckets} == {dt.date(2027, 1, 15)}
    assert {(b.status, b.model) for b in buckets} == {(429, "m"), (429, ""), (200, "m"), (200, "")}
    assert sum(b.latency_ms_total for b in buckets) == sum(float(i % 7) for i in range(600))
    assert {b.latency_ms_max for b in buckets} == {6.0}


async def test_two_workers_add_to_the_same_bucket(db_settings: Settings, engine: AsyncEngine) -> None:
    # Two engines, as two granian workers (or two instances) would have.
    other = create_engine(db_settings)
    try:
        clock = Clock(T0 + 10)
        one = UsageRecorder(sessions_of(engine), clock=clock)
        two = UsageRecorder(sessions_of(other), clock=clock)
        for _ in range(50):
            one.record("k1", "api_key", "POST", "/v1/completions", 200, "m", 10, 1, 5.0)
        for _ in range(30):
            two.record("k1", "api_key", "POST", "/v1/completions", 200, "m", 20, 2, 9.0)
        two.record("k1", "api_key", "POST", "/v1/completions", 500, "m", 0, 0, 1.0)
        # Concurrently: on PostgreSQL both transactions meet on the same row.
        assert await asyncio.gather(one.flush(), two.flush()) == [1, 2]
        # And again, into rows that now exist.
        one.record("k1", "api_key", "POST", "/v1/completions", 200, "m", 1, 1, 12.0)
        assert await one.flush() == 1
    finally:
        await other.dispose()
    ok, failed = sorted(await stored(engine), key=lambda b: b.status)
    assert (ok.status, ok.requests, ok.prompt_tokens, ok.completion_tokens) == (200, 81, 1101, 111)
    assert ok.latency_ms_total == 50 * 5.0 + 30 * 9.0 + 12.0 and ok.latency_ms_max == 12.0
    assert (failed.status, failed.requests) == (500, 1)


async def test_a_failed_flush_keeps_the_counts_and_writes_them_later(settings_factory: Any) -> None:
    # A real database that is not there yet: the file exists but has no tables until it is migrated.
    settings: Settings = settings_factory()
    engine = create_engine(settings)
    try:
        clock = Clock(T0)
        recorder = UsageRecorder(sessions_of(engine), clock=clock)
        for _ in range(3):
            recorder.record("k1", "api_key", "GET", "/a", 200, "", 1, 0, 1.0)
        with pytest.raises(Exception, match="no such table"):
            await recorder.flush()
        assert len(recorder) == 1 and recorder.pending_requests == 3
        # Recorded while the next write is under way: the same bucket (merged back) and a new one.
        flushing = asyncio.create_task(recorder.flush())
        await asyncio.sleep(0)
        assert len(recorder) == 0, "the flush should have taken the buckets and be waiting on the database"
        recorder.record("k1", "api_key", "GET", "/a", 200, "", 1, 0, 4.0)
        clock.now += 60
        recorder.record("k1", "api_key", "GET", "/a", 200, "", 1, 0, 2.0)
        with pytest.raises(Exception, match="no such table"):
            await flushing
        assert len(recorder) == 2 and recorder.pending_requests == 5
        migrate(settings)
        assert await recorder.flush() == 2
        buckets = await stored(engine)
    finally:
        await engine.dispose()
    assert [(b.requests, b.prompt_tokens, b.latency_ms_total, b.latency_ms_max) for b in buckets] == [
        (4, 4, 7.0, 4.0),
        (1, 1, 2.0, 2.0),
    ]


async def test_beyond_the_buffer_bound_the_oldest_buckets_are_dropped(settings_factory: Any) -> None:
    engine = create_engine(settings_factory())
    try:
        clock = Clock(T0)
        recorder = UsageRecorder(sessions_of(engine), buffer_max=2, clock=clock)
        for minute in range(3):
            clock.now = T0 + 60 * minute
            for _ in range(minute + 1):
                recorder.record("k1", "api_key", "GET", "/a", 200, "", 0, 0, 1.0)
        dropped = metric("pylon_key_usage_buckets_dropped_total")
        dropped_requests = metric("pylon_key_usage_requests_dropped_total")
        with pytest.raises(Exception, match="no such table"):
            await recorder.flush()
        # The first minute's bucket (1 request) went; the two newest stay.
        assert len(recorder) == 2 and recorder.pending_requests == 5
        assert metric("pylon_key_usage_buckets_dropped_total") == dropped + 1
        assert metric("pylon_key_usage_requests_dropped_total") == dropped_requests + 1
    finally:
        await engine.dispose()


async def test_account_charges_tokens_and_records_only_keys_and_signers(db_settings: Settings) -> None:
    engine = create_engine(db_settings)
    runtime = KeysRuntime(db_settings, engine)
    try:
        runtime.account(KEY, Usage(model="m", prompt_tokens=5, completion_tokens=7), "POST", "/r", 200, 0.25)
        runtime.account(KEY, None, "GET", "/r", 404, 0.001)
        runtime.account(SIGNER, Usage(prompt_tokens=3), "POST", "/r", 200, 0.002)
        runtime.account(ADMIN, Usage(prompt_tokens=100), "POST", "/r", 200, 0.002)
        assert runtime.limiter.usage("k1") == (0, 12)
        # Signers have no rate limit of their own; the admin token is neither charged nor recorded.
        assert runtime.limiter.usage(SIGNER.id) == (0, 0) and runtime.limiter.usage("admin") == (0, 0)
        assert len(runtime.usage) == 3
        await runtime.usage.flush()
        buckets = await stored(engine)
    finally:
        await engine.dispose()
    assert sorted(
        (b.key_id, b.kind, b.status, b.model, b.prompt_tokens, b.latency_ms_total) for b in buckets
    ) == [
        ("5SignerHotkey", "epistula", 200, "", 3, 2.0),
        ("k1", "api_key", 200, "m", 5, 250.0),
        ("k1", "api_key", 404, "", 0, 1.0),
    ]


async def test_report_sums_buckets_per_day_and_sets_last_used(engine: AsyncEngine) -> None:
    async with sessions_of(engine)() as session:
        created = await KeyService(session).create(KeyCreate(name="r", scopes=["inference"]))
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    clock = Clock(today.timestamp())
    recorder = UsageRecorder(sessions_of(engine), clock=clock)

    def requests(n: int, status: int, prompt: int, route: str = "/v1/chat/completions") -> None:
        for _ in range(n):
            recorder.record(created.id, "api_key", "POST", route, status, "m", prompt, 2 * prompt, 3.0)

    requests(4, 200, 10)
    requests(2, 429, 0)
    requests(1, 502, 5, route="/v1/completions")
    clock.now -= 86400
    requests(3, 200, 1)
    clock.now -= 86400 * 5
    requests(7, 200, 1)
    await recorder.flush()
    async with sessions_of(engine)() as session:
        report = await KeyService(session).usage(created.id, days=2)
        week = await KeyService(session).usage(created.id, days=7)
        key = await session.get(ApiKey, created.id)
    assert [(d.day, d.requests, d.errors, d.prompt_tokens, d.completion_tokens) for d in report.days] == [
        (today.date() - dt.timedelta(days=1), 3, 0, 3, 6),
        (today.date(), 7, 3, 45, 90),
    ]
    assert (report.totals.requests, report.totals.errors, report.totals.prompt_tokens) == (10, 3, 48)
    assert report.totals.completion_tokens == 96
    assert week.totals.requests == 17 and len(week.days) == 3
    # The latest request of the key, to the second (the clock went back after it).
    assert key is not None and key.last_used_at is not None
    assert abs(key.last_used_at.timestamp() - today.timestamp()) < 1e-3
