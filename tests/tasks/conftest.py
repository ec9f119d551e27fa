"""Task fixtures: one fake model server per module (a real process on loopback), Pylon in-process."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings, load_settings
from tests.conftest import base_env, free_port, migrate
from tests.inference.conftest import FakeBackend

ADMIN = {"Authorization": "Bearer test-admin-token"}
# The fake serves every model the tasks are routed to, plus a "reference" model for scoring.
MODELS = "whisper-1,tts-1,summarizer,reference"
ROUTES = {"transcription": "whisper-1", "tts": "tts-1", "summarization": "summarizer"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeBackend]:
    env = {**os.environ, "FAKE_MODELS": MODELS}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    backend = FakeBackend(free_port(), tmp_path_factory.mktemp("fake") / "fake.log", env)
    backend.start()
    yield backend
    backend.stop()


def tasks_env(fake: FakeBackend, **extra: str) -> dict[str, str]:
    backends = [{"name": "fake", "kind": "openai", "base_url": fake.url}]
    return {
        "PYLON_BACKENDS": json.dumps(backends),
        "PYLON_TASKS_ROUTES": json.dumps(ROUTES),
        "PYLON_TASKS_POLL_INTERVAL": "0.05",
        "PYLON_TASKS_RETRY_START": "0.05",
        "PYLON_TASKS_RETRY_CAP": "0.1",
        **extra,
    }


class TaskPylon:
    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://pylon", headers=ADMIN, timeout=30
        )

    @property
    def tasks_dir(self) -> Path:
        return Path(self.settings.data_dir).resolve() / "tasks"

    def stored_files(self) -> list[Path]:
        return sorted(path for path in self.tasks_dir.rglob("*") if path.is_file())


@asynccontextmanager
async def running_pylon(data_dir: Path, env: dict[str, str]) -> AsyncIterator[TaskPylon]:
    """The app with its lifespan, entered and left in a task of its own (a module-scoped fixture's setup
    and teardown run in different tasks, and the lifespan's task group must be left where it was entered)."""
    settings = load_settings({**base_env(data_dir), **env})
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.litestar.lifespan():
            started.set()
            await stop.wait()

    holder = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({holder, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        waiter.cancel()
        holder.result()
    try:
        yield TaskPylon(app, settings)
    finally:
        stop.set()
        await holder


async def wait_task(client: httpx.AsyncClient, task_id: int, timeout: float = 20.0) -> dict[str, Any]:
    """Poll until the task ends (completed, failed, cancelled)."""
    deadline = asyncio.get_running_loop().time() + timeout
    task: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        task = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        if task.get("status") in ("completed", "failed", "cancelled"):
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} did not end within {timeout}s: {task}")
