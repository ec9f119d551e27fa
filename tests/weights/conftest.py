"""Weights fixtures: an app on the simulated subnet with fast blocks, quick retries, no coalescing delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.devchain.client import SimulatedChainClient
from app.main import create_app
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import SettingsFactory, migrate

FAST = {
    "PYLON_LOCAL_BLOCK_TIME": "0.05",
    "PYLON_LOCAL_NEURONS": "16",
    "PYLON_WEIGHTS_COALESCE_SECONDS": "0",
    "PYLON_WEIGHTS_POLL_INTERVAL": "0.05",
    "PYLON_WEIGHTS_RETRY_START": "0.05",
    "PYLON_WEIGHTS_RETRY_CAP": "0.2",
}


@pytest.fixture
def weights_settings(settings_factory: SettingsFactory) -> Callable[..., Settings]:
    """`weights_settings(PYLON_X="1")`: migrated settings with FAST defaults, overridable."""

    def build(**env: str) -> Settings:
        settings = settings_factory(**{**FAST, **env})
        # Alembic runs its own event loop: keep it off the test's loop (async tests call this factory).
        with ThreadPoolExecutor(1) as pool:
            pool.submit(migrate, settings).result()
        return settings

    return build


@pytest.fixture
def weights_app_factory(weights_settings: Callable[..., Settings]) -> Callable[..., Litestar]:
    def build(**env: str) -> Litestar:
        return create_app(weights_settings(**env))

    return build


@pytest.fixture
async def wclient(weights_app_factory: Callable[..., Litestar]) -> AsyncIterator[AsyncTestClient]:
    async with PylonTestClient(app=weights_app_factory()) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env's admin token
        yield client


def chain_of(client: AsyncTestClient) -> SimulatedChainClient:
    chain = client.app.state.chain
    assert isinstance(chain, SimulatedChainClient)
    return chain


async def hotkeys(client: AsyncTestClient, netuid: int = 1, count: int = 5) -> list[str]:
    """Hotkeys on the subnet other than Pylon's own identities'."""
    neurons = await chain_of(client).neurons(netuid)
    own = {identity.hotkey_ss58 for identity in client.app.state.weights.identities.values()}
    return [n.hotkey for n in neurons if n.hotkey not in own][:count]


async def wait_job(
    client: AsyncTestClient,
    job_id: int,
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] not in ("pending", "running"),
    timeout: float = 15.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/v1/weights/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not reach the expected state in {timeout}s: {job}")
        await asyncio.sleep(0.05)
