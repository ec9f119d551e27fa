"""The dashboard's reads, built on the features' own services (metagraph cache, weights jobs, key usage
reports, the inference router): this module only reshapes their answers for a page, it queries nothing
of its own.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.chain.metagraph import CachedMetagraph, MetagraphCache
from app.dashboard.schemas import (
    BackendsHealth,
    KeyUsageSeries,
    MetagraphTable,
    NeuronRow,
    UsageOverview,
    WeightsTimeline,
)
from app.inference.router import BackendRouter
from app.keys.schemas import UsageDay
from app.keys.service import KeyService
from app.weights.service import WeightsService


def metagraph_table(cached: CachedMetagraph, stale: bool) -> MetagraphTable:
    """The cached metagraph as table rows, ordered by uid (the cache keys them by hotkey)."""
    rows = [
        NeuronRow(
            uid=neuron.uid,
            hotkey=neuron.hotkey,
            coldkey=neuron.coldkey,
            stake=neuron.stake,
            trust=neuron.trust,
            incentive=neuron.incentive,
            emission=neuron.emission,
            dividends=neuron.dividends,
            validator_permit=neuron.validator_permit,
            active=neuron.active,
            axon=f"{neuron.axon_info.ip}:{neuron.axon_info.port}",
        )
        for neuron in cached.neurons.values()
    ]
    rows.sort(key=lambda row: row.uid)
    return MetagraphTable(netuid=cached.netuid, block=cached.block, stale=stale, neurons=rows)


async def latest_table(cache: MetagraphCache, netuid: int) -> MetagraphTable:
    """The latest metagraph's table; raises the cache's ChainErrors (unknown netuid, chain unreachable)."""
    return metagraph_table(await cache.latest(netuid), cache.is_stale())


async def weights_timeline(
    service: WeightsService, *, limit: int, netuids: frozenset[int] | None = None
) -> WeightsTimeline:
    """The newest `limit` jobs of every identity, oldest first (a timeline reads left to right)."""
    jobs = await service.list_jobs(limit=limit)
    if netuids is not None:
        jobs = [job for job in jobs if job.netuid in netuids]
    jobs.reverse()
    return WeightsTimeline(jobs=jobs, counts=dict(Counter(job.status for job in jobs)))


async def usage_overview(
    sessions: async_sessionmaker[AsyncSession], *, days: int, today: dt.date | None = None
) -> UsageOverview:
    """Each key's report (`KeyService.usage`, as `GET /api/v1/keys/{id}/usage` serves it) and their sum
    per day. One report per key: a dashboard lists tens of keys, not thousands."""
    async with sessions() as session:
        service = KeyService(session)
        keys = await service.list(include_revoked=True)
        series = []
        for key in keys:
            report = await service.usage(key.id, days=days)
            series.append(
                KeyUsageSeries(
                    id=key.id,
                    name=key.name,
                    status=key.status,
                    scopes=key.scopes,
                    totals=report.totals,
                    days=report.days,
                )
            )
    today = today or dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=days - 1)
    summed = {since + dt.timedelta(days=n): UsageDay(day=since + dt.timedelta(days=n)) for n in range(days)}
    for key_series in series:
        for day in key_series.days:
            total = summed.get(day.day)
            if total is not None:
                total.requests += day.requests
                total.errors += day.errors
                total.prompt_tokens += day.prompt_tokens
                total.completion_tokens += day.completion_tokens
    return UsageOverview(since=since, keys=series, days=list(summed.values()))


def backends_health(router: BackendRouter) -> BackendsHealth:
    """This worker's view of the backends: health, models, requests in flight, cool-down."""
    return BackendsHealth(backends=router.statuses())
