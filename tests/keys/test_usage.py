"""Usage through the app: buckets recorded after the response (streams too), written early and on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Request, get
from litestar.params import FromPath
from litestar.response import Stream
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth.context import Usage
from app.auth.scopes import Scope
from app.db import create_engine
from app.http.context import context_of
from app.keys.models import ApiKey, UsageBucket
from app.main import create_app
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import migrate
from tests.keys.helpers import ADMIN, bearer, create_key


@get("/test/complete/{n:int}", opt={"scope": Scope.INFERENCE}, sync_to_thread=False)
def complete_route(request: Request, n: FromPath[int]) -> dict[str, int]:
    context_of(request).usage = Usage(model="small", backend="b", prompt_tokens=n, completion_tokens=2 * n)
    if n == 13:
        from litestar.exceptions import ClientException

        raise ClientException("unlucky")
    return {"n": n}


@get("/test/model/{name:str}", opt={"scope": Scope.INFERENCE}, sync_to_thread=False)
def model_route(request: Request, name: FromPath[str]) -> dict[str, str]:
    context_of(request).usage = Usage(model=name, prompt_tokens=1)
    return {"model": name}


@get("/test/stream", opt={"scope": Scope.INFERENCE})
async def stream_route(request: Request) -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0)
        # Tokens are only known once the stream is done.
        context_of(request).usage = Usage(model="big", prompt_tokens=7, completion_tokens=3)

    return Stream(chunks())


def app_for(settings: Settings) -> Litestar:
    app = create_app(settings)
    app.litestar.register(complete_route)
    app.litestar.register(model_route)
    app.litestar.register(stream_route)
    return app


async def stored_buckets(settings: Settings) -> list[UsageBucket]:
    engine = create_engine(settings)
    try:
        async with async_sessionmaker(engine)() as session:
            query = select(UsageBucket).order_by(UsageBucket.route, UsageBucket.status, UsageBucket.minute)
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


def by_route_status_model(buckets: list[UsageBucket]) -> dict[tuple[str, int, str], tuple[int, int, int]]:
    """(requests, prompt, completion) per route, status and model, summed over minutes (a test may straddle
    a minute boundary)."""
    sums: dict[tuple[str, int, str], tuple[int, int, int]] = {}
    for b in buckets:
        n, p, c = sums.get((b.route, b.status, b.model), (0, 0, 0))
        sums[(b.route, b.status, b.model)] = (n + b.requests, p + b.prompt_tokens, c + b.completion_tokens)
    return sums


@pytest.fixture
def lazy_flush_settings(settings_factory: Any) -> Settings:
    """Flushes only when asked, at a batch of 5 buckets, or on shutdown."""
    settings: Settings = settings_factory(
        PYLON_KEYS_USAGE_FLUSH_INTERVAL="600", PYLON_KEYS_USAGE_BATCH_SIZE="5"
    )
    migrate(settings)
    return settings


async def test_usage_report_has_totals_and_a_daily_series(lazy_flush_settings: Settings) -> None:
    async with PylonTestClient(app=app_for(lazy_flush_settings)) as client:
        created = await create_key(client, ["inference"])
        key = bearer(created["key"])
        for n in (1, 2, 13):
            await client.get(f"/test/complete/{n}", headers=key)
        streamed = await client.get("/test/stream", headers=key)
        assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
        report = (await client.get(f"/api/v1/keys/{created['id']}/usage?days=7", headers=ADMIN)).json()
    assert report["totals"] == {"requests": 4, "errors": 1, "prompt_tokens": 23, "completion_tokens": 35}
    assert len(report["days"]) == 1 and report["days"][0]["requests"] == 4
    buckets = await stored_buckets(lazy_flush_settings)
    assert by_route_status_model(buckets) == {
        ("/test/complete/{n}", 200, "small"): (2, 3, 6),
        ("/test/complete/{n}", 400, "small"): (1, 13, 26),
        ("/test/stream", 200, "big"): (1, 7, 3),
    }
    for b in buckets:
        assert b.key_id == created["id"] and b.kind == "api_key" and b.method == "GET"
        assert b.minute.second == 0 and b.minute.microsecond == 0 and b.day == b.minute.date()
        assert 0 <= b.latency_ms_max <= b.latency_ms_total


async def test_a_full_batch_is_written_without_waiting(lazy_flush_settings: Settings) -> None:
    app = app_for(lazy_flush_settings)
    async with PylonTestClient(app=app) as client:
        # One minute for the whole test: a minute boundary would open extra buckets.
        app.state.keys_runtime.usage.clock = lambda: 1_800_000_030.0
        key = bearer((await create_key(client, ["inference"]))["key"])
        # Many requests into few buckets: 4 models, 3 requests each.
        for _ in range(3):
            for name in ("a", "b", "c", "d"):
                await client.get(f"/test/model/{name}", headers=key)
        await asyncio.sleep(0.3)
        assert await stored_buckets(lazy_flush_settings) == []
        assert len(app.state.keys_runtime.usage) == 4
        await client.get("/test/model/e", headers=key)
        for _ in range(50):
            if len(await stored_buckets(lazy_flush_settings)) == 5:
                break
            await asyncio.sleep(0.05)
        buckets = await stored_buckets(lazy_flush_settings)
    assert sorted((b.model, b.requests, b.prompt_tokens) for b in buckets) == [
        ("a", 3, 3),
        ("b", 3, 3),
        ("c", 3, 3),
        ("d", 3, 3),
        ("e", 1, 1),
    ]


async def test_nothing_is_lost_on_a_clean_shutdown(lazy_flush_settings: Settings) -> None:
    async with PylonTestClient(app=app_for(lazy_flush_settings)) as client:
        created = await create_key(client, ["inference"])
        for n in range(3):
            await client.get(f"/test/complete/{n}", headers=bearer(created["key"]))
        assert await stored_buckets(lazy_flush_settings) == []
    assert by_route_status_model(await stored_buckets(lazy_flush_settings)) == {
        ("/test/complete/{n}", 200, "small"): (3, 3, 6)
    }
    engine = create_engine(lazy_flush_settings)
    try:
        async with async_sessionmaker(engine)() as session:
            key = await session.get(ApiKey, created["id"])
            assert key is not None and key.last_used_at is not None
    finally:
        await engine.dispose()


async def test_admin_token_and_refused_calls_are_not_recorded(lazy_flush_settings: Settings) -> None:
    async with PylonTestClient(app=app_for(lazy_flush_settings)) as client:
        await client.get("/test/complete/1", headers=ADMIN)
        await client.get("/test/complete/1")
        await client.get("/test/complete/1", headers=bearer("pylon_aaaaaaaaaaaa_" + "b" * 43))
    assert await stored_buckets(lazy_flush_settings) == []
