"""Tasks: summaries accepted per second (in-process app over ASGI, concurrency 32) and submit -> claim
latency at an idle queue on SQLite (the worker woken in-process, and by polling as another process is).

    uv run python -m bench.bench_tasks
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from app.db import create_engine
from app.jobs.queue import Owner
from app.main import create_app
from app.settings import load_settings
from app.tasks.service import TasksService
from tests.conftest import base_env, migrate

TEXT = "Pylon queues long jobs such as transcription, speech and summaries durably. " * 2
ROUTES = '{"summarization": "m", "tts": "m", "transcription": "m"}'


async def accepts(data: Path, total: int = 2000, concurrency: int = 32) -> float:
    settings = load_settings({**base_env(data), "PYLON_TASKS_ROUTES": ROUTES, "PYLON_TASKS_WORKER": "false"})
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    async with app.litestar.lifespan():
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": "Bearer test-admin-token"}
        async with httpx.AsyncClient(transport=transport, base_url="http://pylon", headers=headers) as client:
            body = {"text": TEXT, "source_language": "en"}
            left = total

            async def one() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    response = await client.post("/api/v1/summarization", json=body)
                    assert response.status_code == 202, response.text

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrency)))
            return total / (time.perf_counter() - started)


async def claim_latency(data: Path, woken: bool, rounds: int = 100, poll: float = 0.05) -> float:
    settings = load_settings({**base_env(data), "PYLON_TASKS_ROUTES": ROUTES})
    await asyncio.to_thread(migrate, settings)
    service = TasksService(settings, create_engine(settings))
    # A worker on its own engine (as another process would be), or on the same queue (woken in-process).
    other = TasksService(settings, create_engine(settings))
    queue = service.queue.with_owner(Owner("i", "b", "w")) if woken else other.queue
    samples = []
    for _ in range(rounds):
        queue.wakeup.clear()
        submitted = time.perf_counter()
        await service.submit(None, "summarization", source_language="en", priority="normal", text=TEXT)
        while True:
            row = await queue.claim(30.0)
            if row is not None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.wakeup.wait(), poll)
            queue.wakeup.clear()
        samples.append(time.perf_counter() - submitted)
        await asyncio.sleep(poll * 0.37)
    await service.engine.dispose()
    await other.engine.dispose()
    return statistics.median(samples) * 1000


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rate = await accepts(Path(tmp) / "a")
        woken = await claim_latency(Path(tmp) / "b", woken=True)
        polled = await claim_latency(Path(tmp) / "c", woken=False)
    print(f"tasks accepted/s (summaries, c=32, SQLite, in-process ASGI): {rate:8.0f}   (target >= 500)")
    print(f"submit -> claim p50, same process (woken):                  {woken:8.2f} ms (target <= 50)")
    print(f"submit -> claim p50, other process (50 ms poll):            {polled:8.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
