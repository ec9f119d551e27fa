"""Worker claims: each job is taken by exactly one worker, one per identity+netuid at a time, leases lapse.

The same scenario runs on SQLite and on PostgreSQL, with several engines standing in for several
processes or instances.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_engine
from app.settings import Settings
from app.weights.identities import load_identities
from app.weights.service import WeightsService, jobs
from app.weights.worker import WeightsWorker, backoff

NETUIDS = range(1, 25)


async def _services(settings: Settings, count: int) -> list[WeightsService]:
    identities = load_identities(settings)
    return [WeightsService(settings, create_engine(settings), None, identities) for _ in range(count)]


@pytest.fixture
async def sqlite_services(weights_settings: Callable[..., Settings]) -> AsyncIterator[list[WeightsService]]:
    services = await _services(weights_settings(), 4)
    yield services
    for service in services:
        await service.engine.dispose()


@pytest.fixture
async def postgres_services(
    weights_settings: Callable[..., Settings], postgres_url: str
) -> AsyncIterator[list[WeightsService]]:
    services = await _services(weights_settings(PYLON_DB_URL=postgres_url), 4)
    yield services
    for service in services:
        await service.engine.dispose()


async def _claim_all(services: list[WeightsService]) -> list[int]:
    """Every worker (own engine, like its own process) claims until nothing is due; returns all claims."""
    workers = [WeightsWorker(service) for service in services for _ in range(2)]
    claimed: list[int] = []

    async def drain(worker: WeightsWorker) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job_id = await worker.claim()
            if job_id is None:
                return
            claimed.append(job_id)

    await asyncio.gather(*(drain(worker) for worker in workers))
    return claimed


async def _scenario(services: list[WeightsService]) -> None:
    submitted = []
    for netuid in NETUIDS:
        response = await services[netuid % len(services)].submit("default", netuid, {"a": 1.0})
        submitted.append(response.job_id)

    claimed = await _claim_all(services)
    assert Counter(claimed).most_common(1)[0][1] == 1, "a job was claimed twice"
    assert sorted(claimed) == sorted(submitted)

    # One job per identity+netuid on chain: every claimed job is still running, so newer ones wait.
    newer = [(await services[0].submit("default", netuid, {"b": 1.0})).job_id for netuid in (1, 2, 3)]
    assert await _claim_all(services) == [], "a second job for the same identity+netuid was claimed"
    assert {(await services[0].get_job(job_id)).status for job_id in newer} == {"pending"}


async def test_each_job_is_claimed_once_on_sqlite(sqlite_services: list[WeightsService]) -> None:
    await _scenario(sqlite_services)


@pytest.mark.postgres
async def test_each_job_is_claimed_once_on_postgres(postgres_services: list[WeightsService]) -> None:
    await _scenario(postgres_services)


async def test_lapsed_lease_is_taken_over_and_the_old_holder_cannot_finish(
    sqlite_services: list[WeightsService],
) -> None:
    service = sqlite_services[0]
    job_id = (await service.submit("default", 1, {"a": 1.0})).job_id
    first, second = WeightsWorker(service), WeightsWorker(sqlite_services[1])
    assert await first.claim() == job_id
    assert await second.claim() is None, "a live lease blocks other workers"
    await _expire_lease(service.engine, job_id)
    assert await second.claim() == job_id
    # The first worker comes back (e.g. it was stuck on a slow node): its result is not written.
    assert await first._finish(job_id, "set") is False
    assert await second._finish(job_id, "set") is True
    job = await service.get_job(job_id)
    assert job.status == "set" and job.attempts == 2


async def test_newest_job_waits_for_the_running_one_then_runs(sqlite_services: list[WeightsService]) -> None:
    service = sqlite_services[0]
    worker = WeightsWorker(service)
    running = (await service.submit("default", 1, {"a": 1.0})).job_id
    assert await worker.claim() == running
    waiting = (await service.submit("default", 1, {"b": 1.0})).job_id
    other_pair = (await service.submit("default", 2, {"c": 1.0})).job_id
    assert await WeightsWorker(sqlite_services[1]).claim() == other_pair
    assert await WeightsWorker(sqlite_services[2]).claim() is None
    await worker._finish(running, "set")
    assert await WeightsWorker(sqlite_services[3]).claim() == waiting


async def test_stale_pending_job_is_superseded_at_claim(sqlite_services: list[WeightsService]) -> None:
    """Two PUTs racing on PostgreSQL could both miss each other's supersede; the claim sweeps the older."""
    service = sqlite_services[0]
    older = (await service.submit("default", 1, {"a": 1.0})).job_id
    newer = (await service.submit("default", 1, {"b": 1.0})).job_id
    async with service.engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == older).values(status="pending", superseded_by=None)
        )
    assert await WeightsWorker(service).claim() == newer
    assert (await service.get_job(older)).status == "superseded"


async def test_dead_workers_running_job_with_a_newer_sibling_is_superseded(
    sqlite_services: list[WeightsService],
) -> None:
    service = sqlite_services[0]
    older = (await service.submit("default", 1, {"a": 1.0})).job_id
    assert await WeightsWorker(service).claim() == older
    newer = (await service.submit("default", 1, {"b": 1.0})).job_id
    await _expire_lease(service.engine, older)
    assert await WeightsWorker(sqlite_services[1]).claim() == newer
    assert (await service.get_job(older)).status == "superseded"


async def _expire_lease(engine: AsyncEngine, job_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(lease_until=time.time() - 1))


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 1.0, 5.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
