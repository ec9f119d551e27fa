"""Apply-weights jobs: creating them (PUT, CLI) and reading them back. `app.weights.worker` lands them.

Every state change is a row update, so a killed process loses nothing: pending jobs and jobs between
retries are plain rows with a `next_attempt_at`, which a worker claims when it is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import structlog
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.chain.client import ChainClient, ChainError, UnknownNetuid
from app.chain.metagraph import MetagraphCache
from app.jobs.queue import JobQueue, new_owner
from app.settings import Settings
from app.weights.identities import Identity
from app.weights.models import APPLIED_STATUSES, WeightsJob
from app.weights.schemas import (
    LastWeights,
    SetWeightsResponse,
    WeightsJobView,
    validate_weights,
)

log = structlog.get_logger(__name__)

# A PUT reuses the subnet's neurons and tempo read within this many seconds (keeps PUTs off the chain).
VIEW_TTL = 1.0

jobs = cast(Table, WeightsJob.__table__)
# Any fixed number; it names the lock that serialises weights claims on PostgreSQL.
CLAIM_LOCK_KEY = 7_349_001


class JobNotFound(LookupError):
    pass


def epoch_end(block: int, netuid: int, tempo: int) -> int:
    """Last block of the epoch containing `block`: subtensor runs a subnet's epoch when
    (block + netuid + 1) % (tempo + 1) == 0 (`blocks_until_next_epoch`)."""
    if tempo <= 0:
        return block
    return block + tempo - (block + netuid + 1) % (tempo + 1)


class SubnetView(msgspec.Struct, frozen=True):
    block: int
    tempo: int
    hotkeys: frozenset[str]
    fetched: float


def _view(data: Mapping[Any, Any], with_weights: bool) -> WeightsJobView:
    return WeightsJobView(
        id=data["id"],
        identity=data["identity"],
        netuid=data["netuid"],
        hotkey=data["hotkey"],
        status=data["status"],
        count=data["count"],
        skipped_hotkeys=list(data["skipped_hotkeys"] or []),
        attempts=data["attempts"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        mode=data["mode"],
        last_error=data["last_error"],
        created_block=data["created_block"],
        epoch_end_block=data["epoch_end_block"],
        tempo=data["tempo"],
        applied_block=data["applied_block"],
        extrinsic_hash=data["extrinsic_hash"],
        reveal_round=data["reveal_round"],
        superseded_by=data["superseded_by"],
        next_attempt_at=data["next_attempt_at"] if data["status"] == "pending" else None,
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        weights=dict(data["weights"]) if with_weights else None,
    )


class WeightsService:
    """Jobs in the database; what the controller, the CLI and the worker share."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        chain: ChainClient | None,
        identities: Mapping[str, Identity],
        metagraph: MetagraphCache | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.chain = chain
        # The per-block metagraph cache keeps PUTs off the chain once warm.
        self.metagraph = metagraph
        self.identities = dict(identities)
        self.is_postgres = engine.dialect.name == "postgresql"
        self._views: dict[int, SubnetView] = {}
        self._view_locks: dict[int, asyncio.Lock] = {}
        # The shared job mechanism (app/jobs/): claims, leases naming their owner's boot, retries. Its
        # wakeup is set by each PUT so this process's worker looks for due jobs at once.
        self.queue = JobQueue(
            engine,
            jobs,
            new_owner(settings),
            order=lambda t: (t.c.next_attempt_at, t.c.id),
            # The claim depends on other rows (one running job per identity+netuid): serialised.
            serialize_key=CLAIM_LOCK_KEY,
        )
        self.wakeup = self.queue.wakeup

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction (queued per process on SQLite)."""
        return self.queue.writing()

    # ------------------------------------------------------------------------------ creating jobs
    def identity(self, name: str) -> Identity:
        try:
            return self.identities[name]
        except KeyError:
            raise JobNotFound(f"unknown identity {name!r}") from None

    async def subnet_view(self, netuid: int) -> SubnetView | None:
        """The subnet's hotkeys and tempo at a recent head; None when the chain does not answer (the job is
        still accepted: the worker maps hotkeys at the block it applies them)."""
        if self.chain is None:
            return None
        view = self._views.get(netuid)
        if view and time.monotonic() - view.fetched < VIEW_TTL:
            return view
        lock = self._view_locks.setdefault(netuid, asyncio.Lock())
        async with lock:
            view = self._views.get(netuid)
            if view and time.monotonic() - view.fetched < VIEW_TTL:
                return view
            timeout = self.settings.chain.call_timeout
            try:
                if self.metagraph is not None:
                    cached = await asyncio.wait_for(self.metagraph.latest(netuid), timeout)
                    _, hyper = await asyncio.wait_for(self.metagraph.hyperparams(netuid), timeout)
                    block, hotkeys = cached.block.number, frozenset(cached.neurons)
                else:
                    head = await asyncio.wait_for(self.chain.head(), timeout)
                    neurons = await asyncio.wait_for(self.chain.neurons(netuid, head), timeout)
                    hyper = await asyncio.wait_for(self.chain.hyperparams(netuid, head), timeout)
                    block, hotkeys = head.number, frozenset(n.hotkey for n in neurons)
            except UnknownNetuid:
                raise
            except (ChainError, TimeoutError, OSError) as exc:
                log.warning("weights_subnet_view_unavailable", netuid=netuid, error=str(exc))
                return None
            view = SubnetView(block=block, tempo=hyper.tempo, hotkeys=hotkeys, fetched=time.monotonic())
            self._views[netuid] = view
            return view

    async def submit(self, identity_name: str, netuid: int, weights: dict[str, float]) -> SetWeightsResponse:
        """Validate and store a job; older pending jobs of the same identity+netuid become `superseded`.

        Raises WeightsValidationError (bad weights), JobNotFound (unknown identity), UnknownNetuid.
        """
        identity = self.identity(identity_name)
        validate_weights(weights)
        view = await self.subnet_view(netuid)
        skipped: list[str] = []
        created_block = end_block = tempo = None
        if view is not None:
            skipped = [hotkey for hotkey in weights if hotkey not in view.hotkeys]
            created_block, tempo = view.block, view.tempo
            end_block = epoch_end(view.block, netuid, view.tempo)
        now = time.time()
        async with self.writing() as conn:
            job_id = (
                await conn.execute(
                    jobs.insert()
                    .values(
                        identity=identity.name,
                        netuid=netuid,
                        hotkey=identity.hotkey_ss58,
                        weights=weights,
                        count=len(weights),
                        skipped_hotkeys=skipped,
                        status="pending",
                        attempts=0,
                        created_block=created_block,
                        epoch_end_block=end_block,
                        tempo=tempo,
                        # A burst of PUTs coalesces: only a job nobody replaced for this long gets applied.
                        next_attempt_at=now + self.settings.weights.coalesce_seconds,
                    )
                    .returning(jobs.c.id)
                )
            ).scalar_one()
            await conn.execute(
                update(jobs)
                .where(
                    jobs.c.identity == identity.name,
                    jobs.c.netuid == netuid,
                    jobs.c.status == "pending",
                    jobs.c.id < job_id,
                )
                .values(status="superseded", superseded_by=job_id, finished_at=datetime.now(UTC))
            )
        log.info(
            "weights_job_created", job_id=job_id, identity=identity.name, netuid=netuid, count=len(weights)
        )
        self.wakeup.set()
        return SetWeightsResponse(
            job_id=job_id,
            status="pending",
            netuid=netuid,
            identity=identity.name,
            count=len(weights),
            skipped_hotkeys=skipped,
        )

    # ------------------------------------------------------------------------------- reading jobs
    async def get_job(self, job_id: int) -> WeightsJobView:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        if row is None:
            raise JobNotFound(f"no weights job {job_id}")
        return _view(row._mapping, with_weights=True)

    async def list_jobs(
        self,
        *,
        netuid: int | None = None,
        identities: list[str] | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[WeightsJobView]:
        """Newest first; `identities` None means all."""
        query = select(*[c for c in jobs.c if c.name != "weights"]).order_by(jobs.c.id.desc()).limit(limit)
        if netuid is not None:
            query = query.where(jobs.c.netuid == netuid)
        if identities is not None:
            query = query.where(jobs.c.identity.in_(identities))
        if status is not None:
            query = query.where(jobs.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_view(row._mapping, with_weights=False) for row in rows]

    async def last(self, identity: str, netuid: int) -> LastWeights:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(jobs)
                    .where(
                        jobs.c.identity == identity,
                        jobs.c.netuid == netuid,
                        jobs.c.status.in_(APPLIED_STATUSES),
                    )
                    .order_by(jobs.c.finished_at.desc(), jobs.c.id.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            raise JobNotFound(
                f"no weights were set or committed for identity {identity!r} on subnet {netuid}"
            )
        data = row._mapping
        return LastWeights(
            job_id=data["id"],
            identity=data["identity"],
            netuid=data["netuid"],
            status=data["status"],
            block=data["applied_block"],
            extrinsic_hash=data["extrinsic_hash"],
            weights=dict(data["weights"]),
            skipped_hotkeys=list(data["skipped_hotkeys"] or []),
            applied_at=data["finished_at"],
            reveal_round=data["reveal_round"],
        )

    async def count_pending(self) -> int:
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(jobs)
                        .where(jobs.c.status.in_(("pending", "running")))
                    )
                ).scalar_one()
            )
