"""Two Pylon instances on one PostgreSQL database: revocations and rate counts made in one reach the other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import migrate
from tests.keys.helpers import ADMIN, bearer, create_key


@pytest.fixture
def pg_settings(settings_factory: Any, postgres_url: str) -> Settings:
    settings: Settings = settings_factory(PYLON_DB_URL=postgres_url, PYLON_KEYS_SYNC_INTERVAL="0.3")
    migrate(settings)
    return settings


async def wait_for_status(client: AsyncTestClient, token: str, status: int, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (await client.get("/metrics", headers=bearer(token))).status_code == status:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status} within {timeout}s")


async def test_revocation_reaches_another_instance(pg_settings: Settings) -> None:
    async with (
        PylonTestClient(app=create_app(pg_settings)) as one,
        PylonTestClient(app=create_app(pg_settings)) as two,
    ):
        created = await create_key(one, ["metrics:read"])
        assert (await two.get("/metrics", headers=bearer(created["key"]))).status_code == 200
        assert (await one.delete(f"/api/v1/keys/{created['id']}", headers=ADMIN)).status_code == 200
        assert (await one.get("/metrics", headers=bearer(created["key"]))).status_code == 401
        elapsed = await wait_for_status(two, created["key"], 401)
        assert elapsed < 2


async def test_limit_changes_and_counts_reach_another_instance(pg_settings: Settings) -> None:
    async with (
        PylonTestClient(app=create_app(pg_settings)) as one,
        PylonTestClient(app=create_app(pg_settings)) as two,
    ):
        if time.time() % 60 > 50:
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
        created = await create_key(one, ["metrics:read"], rpm=4)
        for _ in range(4):
            assert (await one.get("/metrics", headers=bearer(created["key"]))).status_code == 200
        await wait_for_status(two, created["key"], 429)
        await one.patch(f"/api/v1/keys/{created['id']}", json={"rpm": 100}, headers=ADMIN)
        await wait_for_status(two, created["key"], 200)
