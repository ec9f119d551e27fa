"""The shared job mechanism: priority order, exactly-once claims (SQLite, PostgreSQL), boot-aware leases."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import update

from app.db import create_engine
from app.jobs.queue import Owner
from app.settings import Settings
from app.tasks.service import TasksService, tasks
from app.weights.identities import load_identities
from app.weights.service import WeightsService, jobs
from app.weights.worker import WeightsWorker
from tests.conftest import migrate

ROUTES = '{"transcription": "m", "tts": "m", "summarization": "m"}'
TEXT = "x" * 60


def _settings(settings_factory, **env: str) -> Settings:
    settings = settings_factory(PYLON_TASKS_ROUTES=ROUTES, **env)
    migrate(settings)
    return settings


async def _submit_backlog(service: TasksService, count: int) -> dict[int, str]:
    levels = ("low", "normal", "high")
    made = {}
    for index in range(count):
        level = levels[index % 3]
        accepted = await service.submit(
            None, "summarization", source_language="en", priority=level, text=TEXT
        )
        made[accepted.task_id] = level
    return made


async def _drain(services: list[TasksService]) -> list[int]:
    queues = [
        service.queue.with_owner(Owner("i", "b", f"w{n}-{k}"))
        for n, service in enumerate(services)
        for k in range(2)
    ]
    claimed: list[int] = []

    async def drain(queue) -> None:
        while (row := await queue.claim(30.0)) is not None:
            claimed.append(row["id"])

    await asyncio.gather(*(drain(queue) for queue in queues))
    return claimed


def test_priority_first_then_age(settings_factory) -> None:
    async def run() -> None:
        settings = _settings(settings_factory)
        service = TasksService(settings, create_engine(settings))
        made = await _submit_backlog(service, 30)
        order = []
        while (row := await service.queue.claim(30.0)) is not None:
            order.append(row["id"])
        await service.engine.dispose()
        ranks = {"high": 0, "normal": 1, "low": 2}
        assert order == sorted(made, key=lambda task_id: (ranks[made[task_id]], task_id))

    asyncio.run(run())


async def _exactly_once(settings: Settings) -> None:
    services = [TasksService(settings, create_engine(settings)) for _ in range(3)]
    made = await _submit_backlog(services[0], 60)
    claimed = await _drain(services)
    for service in services:
        await service.engine.dispose()
    assert Counter(claimed).most_common(1)[0][1] == 1, "a task was claimed twice"
    assert sorted(claimed) == sorted(made)


def test_each_task_is_claimed_once_on_sqlite(settings_factory) -> None:
    asyncio.run(_exactly_once(_settings(settings_factory)))


@pytest.mark.postgres
def test_each_task_is_claimed_once_on_postgres(settings_factory, postgres_url) -> None:
    asyncio.run(_exactly_once(_settings(settings_factory, PYLON_DB_URL=postgres_url)))


def test_a_restarted_instance_takes_back_its_weights_job_at_once(settings_factory) -> None:
    """A job leased for 100 s by this instance's previous boot is claimed at once by its new boot; another
    instance waits the lease out."""

    async def run() -> None:
        old_boot = _settings(
            settings_factory,
            PYLON_JOBS_INSTANCE_ID="alpha",
            PYLON_JOBS_BOOT_ID="boot1",
            PYLON_WEIGHTS_COALESCE_SECONDS="0",
        )
        identities = load_identities(old_boot)
        first = WeightsService(old_boot, create_engine(old_boot), None, identities)
        job_id = (await first.submit("default", 1, {"a": 1.0})).job_id
        assert await WeightsWorker(first).claim() == job_id
        async with first.engine.begin() as conn:
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(lease_until=time.time() + 100))
        other_env = {"PYLON_JOBS_INSTANCE_ID": "beta", "PYLON_JOBS_BOOT_ID": "boot9"}
        other = WeightsService(settings_factory(**other_env), first.engine, None, identities)
        assert await WeightsWorker(other).claim() is None, "another instance waits for the lease"
        restarted_settings = settings_factory(PYLON_JOBS_INSTANCE_ID="alpha", PYLON_JOBS_BOOT_ID="boot2")
        restarted = WeightsService(restarted_settings, first.engine, None, identities)
        worker = WeightsWorker(restarted)
        assert await worker.claim() == job_id, "the restarted instance takes its own job back at once"
        # The older boot (were it still alive) never takes a newer boot's job.
        assert await WeightsWorker(first).claim() is None
        assert (await restarted.get_job(job_id)).attempts == 2
        await first.engine.dispose()

    asyncio.run(run())


def test_tasks_table_has_the_shared_columns() -> None:
    for name in (
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "lease_until",
        "started_at",
        "finished_at",
    ):
        assert name in tasks.c and name in jobs.c
