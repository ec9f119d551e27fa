"""Rate limits: 429 with Retry-After, recovery in the next window, tokens, counts shared via the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar import Litestar, Request, get
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth.context import Usage
from app.auth.scopes import Scope
from app.db import create_engine
from app.http.context import context_of
from app.keys.ratelimit import RateLimiter
from app.main import create_app
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import migrate
from tests.keys.helpers import bearer, create_key


class Clock:
    def __init__(self, now: float = 1_200_020.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_then_recovery() -> None:
    clock = Clock()
    limiter = RateLimiter(window=60, clock=clock)
    assert [limiter.acquire("k", 3, None) for _ in range(3)] == [None, None, None]
    limited = limiter.acquire("k", 3, None)
    assert limited is not None and limited[0] == "rpm"
    # 1_200_020 is 20 s into its minute: 40 s to go.
    assert limited[1] == 40
    clock.now += 40
    assert limiter.acquire("k", 3, None) is None
    assert limiter.acquire("other", 3, None) is None


def test_tokens_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(window=60, clock=clock)
    assert limiter.acquire("k", None, 100) is None
    limiter.charge_tokens("k", 60)
    assert limiter.acquire("k", None, 100) is None
    limiter.charge_tokens("k", 60)
    limited = limiter.acquire("k", None, 100)
    assert limited is not None and limited[0] == "tpm"
    clock.now += 60
    assert limiter.acquire("k", None, 100) is None


def test_limits_scale_to_a_shorter_window() -> None:
    limiter = RateLimiter(window=1)
    assert limiter.per_window(120) == 2
    assert limiter.per_window(1) == 1
    assert RateLimiter(window=60).per_window(7) == 7


@pytest.fixture(params=["sqlite", "postgres"])
def shared_settings(request: pytest.FixtureRequest, settings_factory: Any) -> Settings:
    if request.param == "postgres":
        settings: Settings = settings_factory(PYLON_DB_URL=request.getfixturevalue("postgres_url"))
    else:
        settings = settings_factory()
    migrate(settings)
    return settings


async def test_two_processes_share_counts_through_the_database(shared_settings: Settings) -> None:
    engine = create_engine(shared_settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    clock = Clock()
    worker_a, worker_b = RateLimiter(60, clock), RateLimiter(60, clock)
    try:
        for _ in range(3):
            assert worker_a.acquire("k", 4, None) is None
        worker_a.charge_tokens("k", 50)
        await worker_a.sync(sessions)
        await worker_b.sync(sessions)
        # B has seen none of the traffic itself, yet knows A admitted 3 of 4.
        assert worker_b.usage("k") == (3, 50)
        assert worker_b.acquire("k", 4, None) is None
        assert worker_b.acquire("k", 4, None) == ("rpm", 40)
        await worker_b.sync(sessions)
        await worker_a.sync(sessions)
        assert worker_a.acquire("k", 4, None) == ("rpm", 40)
        assert worker_a.acquire("k", None, 50) == ("tpm", 40)
        # Counts admitted while another process syncs are not lost.
        clock.now += 40
        assert worker_a.acquire("k", 4, None) is None
        await asyncio.gather(worker_a.sync(sessions), worker_b.sync(sessions))
        await worker_b.sync(sessions)
        assert worker_b.usage("k") == (1, 0)
    finally:
        await engine.dispose()


@get("/test/tokens", opt={"scope": Scope.INFERENCE}, sync_to_thread=False)
def tokens_route(request: Request) -> dict[str, str]:
    context_of(request).usage = Usage(model="m", backend="b", prompt_tokens=40, completion_tokens=20)
    return {"ok": "yes"}


async def client_for(settings: Settings) -> tuple[Litestar, AsyncTestClient]:
    app = create_app(settings)
    app.litestar.register(tokens_route)
    return app, PylonTestClient(app=app)


@pytest.fixture
def short_window_settings(settings_factory: Any) -> Settings:
    settings: Settings = settings_factory(PYLON_KEYS_RATE_WINDOW="1")
    migrate(settings)
    return settings


async def test_429_with_retry_after_then_recovery(short_window_settings: Settings) -> None:
    _, client = await client_for(short_window_settings)
    async with client:
        key = bearer((await create_key(client, ["inference"], rpm=120))["key"])
        # Start at the beginning of a 1 s window so the three calls share it.
        await asyncio.sleep(1 - time.time() % 1 + 0.01)
        assert (await client.get("/test/tokens", headers=key)).status_code == 200
        assert (await client.get("/test/tokens", headers=key)).status_code == 200
        limited = await client.get("/test/tokens", headers=key)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        assert limited.json()["extra"]["limit"] == "rpm"
        await asyncio.sleep(float(limited.headers["retry-after"]))
        assert (await client.get("/test/tokens", headers=key)).status_code == 200


async def test_tokens_reported_by_a_route_are_charged(migrated_settings: Settings) -> None:
    _, client = await client_for(migrated_settings)
    async with client:
        key = bearer((await create_key(client, ["inference"], tpm=100))["key"])
        assert (await client.get("/test/tokens", headers=key)).status_code == 200
        assert (await client.get("/test/tokens", headers=key)).status_code == 200
        limited = await client.get("/test/tokens", headers=key)
        assert limited.status_code == 429 and limited.json()["extra"]["limit"] == "tpm"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
