"""Usage rows: recorded after the response (streams included), written in batches and on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Request, get
from litestar.params import FromPath
from litestar.response import Stream
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth.context import Usage, report_usage
from app.auth.scopes import Scope
from app.db import create_engine
from app.keys.models import ApiKey, UsageRecord
from app.main import create_app
from app.settings import Settings
from tests.conftest import migrate
from tests.keys.helpers import ADMIN, bearer, create_key


@get("/test/complete/{n:int}", opt={"scope": Scope.INFERENCE}, sync_to_thread=False)
def complete_route(request: Request, n: FromPath[int]) -> dict[str, int]:
    report_usage(request, Usage(model="small", backend="b", prompt_tokens=n, completion_tokens=2 * n))
    if n == 13:
        from litestar.exceptions import ClientException

        raise ClientException("unlucky")
    return {"n": n}


@get("/test/stream", opt={"scope": Scope.INFERENCE})
async def stream_route(request: Request) -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0)
        # Tokens are only known once the stream is done.
        report_usage(request, Usage(model="big", prompt_tokens=7, completion_tokens=3))

    return Stream(chunks())


def app_for(settings: Settings) -> Litestar:
    app = create_app(settings)
    app.register(complete_route)
    app.register(stream_route)
    return app


async def stored_rows(settings: Settings) -> list[UsageRecord]:
    engine = create_engine(settings)
    try:
        async with async_sessionmaker(engine)() as session:
            return list((await session.scalars(select(UsageRecord).order_by(UsageRecord.id))).all())
    finally:
        await engine.dispose()


@pytest.fixture
def lazy_flush_settings(settings_factory: Any) -> Settings:
    """Flushes only when asked, at a batch of 5, or on shutdown."""
    settings: Settings = settings_factory(
        PYLON_KEYS_USAGE_FLUSH_INTERVAL="600", PYLON_KEYS_USAGE_BATCH_SIZE="5"
    )
    migrate(settings)
    return settings


async def test_usage_report_has_totals_and_a_daily_series(lazy_flush_settings: Settings) -> None:
    async with AsyncTestClient(app=app_for(lazy_flush_settings)) as client:
        created = await create_key(client, ["inference"])
        key = bearer(created["key"])
        for n in (1, 2, 13):
            await client.get(f"/test/complete/{n}", headers=key)
        streamed = await client.get("/test/stream", headers=key)
        assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
        report = (await client.get(f"/api/v1/keys/{created['id']}/usage?days=7", headers=ADMIN)).json()
    assert report["totals"] == {"requests": 4, "errors": 1, "prompt_tokens": 23, "completion_tokens": 35}
    assert len(report["days"]) == 1 and report["days"][0]["requests"] == 4
    rows = await stored_rows(lazy_flush_settings)
    assert [(r.route, r.status, r.model) for r in rows] == [
        ("/test/complete/{n}", 200, "small"),
        ("/test/complete/{n}", 200, "small"),
        ("/test/complete/{n}", 400, "small"),
        ("/test/stream", 200, "big"),
    ]
    assert all(r.key_id == created["id"] and r.kind == "api_key" and r.latency_ms >= 0 for r in rows)


async def test_a_full_batch_is_written_without_waiting(lazy_flush_settings: Settings) -> None:
    async with AsyncTestClient(app=app_for(lazy_flush_settings)) as client:
        key = bearer((await create_key(client, ["inference"]))["key"])
        for n in range(4):
            await client.get(f"/test/complete/{n}", headers=key)
        await asyncio.sleep(0.3)
        assert await stored_rows(lazy_flush_settings) == []
        await client.get("/test/complete/4", headers=key)
        for _ in range(50):
            if len(await stored_rows(lazy_flush_settings)) == 5:
                break
            await asyncio.sleep(0.05)
        assert len(await stored_rows(lazy_flush_settings)) == 5


async def test_nothing_is_lost_on_a_clean_shutdown(lazy_flush_settings: Settings) -> None:
    async with AsyncTestClient(app=app_for(lazy_flush_settings)) as client:
        created = await create_key(client, ["inference"])
        for n in range(3):
            await client.get(f"/test/complete/{n}", headers=bearer(created["key"]))
        assert await stored_rows(lazy_flush_settings) == []
    rows = await stored_rows(lazy_flush_settings)
    assert [r.prompt_tokens for r in rows] == [0, 1, 2]
    engine = create_engine(lazy_flush_settings)
    try:
        async with async_sessionmaker(engine)() as session:
            key = await session.get(ApiKey, created["id"])
            assert key is not None and key.last_used_at is not None
    finally:
        await engine.dispose()


async def test_admin_token_and_refused_calls_are_not_recorded(lazy_flush_settings: Settings) -> None:
    async with AsyncTestClient(app=app_for(lazy_flush_settings)) as client:
        await client.get("/test/complete/1", headers=ADMIN)
        await client.get("/test/complete/1")
        await client.get("/test/complete/1", headers=bearer("pylon_aaaaaaaaaaaa_" + "b" * 43))
    assert await stored_rows(lazy_flush_settings) == []
