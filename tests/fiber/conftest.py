"""A miner's Pylon in process, in front of the fake OpenAI server, with a validator registered in its
hotkey directory (`PYLON_EPISTULA_HOTKEYS`) and one that is not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from bittensor_wallet import Keypair

from app.main import create_app
from app.settings import load_settings
from tests.conftest import base_env, free_port, migrate
from tests.inference.conftest import FakeBackend

MINER = Keypair.create_from_uri("//FiberMiner")
VALIDATOR = Keypair.create_from_uri("//FiberValidator")
STRANGER = Keypair.create_from_uri("//FiberStranger")
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def fake_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeBackend]:
    import os

    folder = tmp_path_factory.mktemp("fake")
    backend = FakeBackend(free_port(), folder / "fake.log", dict(os.environ)).start()
    yield backend
    backend.stop()


def miner_env(data_dir: Path, fake: FakeBackend, **extra: str) -> dict[str, str]:
    return {
        **base_env(data_dir),
        "PYLON_BACKENDS": json.dumps([{"name": "fake", "base_url": fake.url}]),
        "PYLON_EPISTULA_HOTKEY": MINER.ss58_address,
        "PYLON_EPISTULA_HOTKEYS": f"{VALIDATOR.ss58_address}:1000",
        **extra,
    }


class Miner:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://miner", timeout=30
        )


@asynccontextmanager
async def running_miner(data_dir: Path, fake: FakeBackend, **extra: str) -> AsyncIterator[Miner]:
    settings = load_settings(miner_env(data_dir, fake, **extra))
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    async with app.litestar.lifespan():
        miner = Miner(app)
        async with miner.http:
            yield miner


@pytest.fixture(scope="module")
def miner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("miner")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def miner(miner_dir: Path, fake_model_server: FakeBackend) -> AsyncIterator[Miner]:
    """One miner's Pylon for the module, its lifespan in a task of its own on the module's event loop
    (anyio's cancel scopes must be left by the task that entered them; fixture teardown runs in another)."""
    ready: asyncio.Future[Miner] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with running_miner(miner_dir, fake_model_server) as started:
                ready.set_result(started)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(run())
    yield await ready
    stop.set()
    await task
