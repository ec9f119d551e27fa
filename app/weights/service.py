"""Apply-weights jobs: creating them (PUT, CLI), reading them back, and the worker that lands them on chain.

Every state change is a row update, so a killed process loses nothing: pending jobs and jobs between
retries are plain rows with a `next_attempt_at`; a job being applied is `running` under a lease
(`claimed_by`, `lease_until`) that another worker takes over once it lapses.

Claiming is one conditional `UPDATE ... WHERE id = (subquery) AND status = 'pending' ... RETURNING id`.
On SQLite that statement runs under the database's single write lock, so two workers can never both see
the row as claimable. On PostgreSQL the same statement runs after `pg_advisory_xact_lock`, which
serialises claim transactions (cheap: one per job); each statement then sees every claim committed
before it, so the same reasoning holds. The claim also enforces "one job per identity+netuid on chain at
a time" (no other live `running` job) and "newest intent wins" (no newer job for the same pair).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import structlog
from prometheus_client import Gauge, Histogram
from sqlalchemy import Table, and_, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from app.chain.client import ChainClient, ChainError, ExtrinsicFailed, UnknownNetuid
from app.chain.metagraph import MetagraphCache
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

JOB_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200)
ATTEMPT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120)
JOB_DURATION = Histogram(
    "pylon_apply_weights_job_duration_seconds",
    "Time from a weights job's creation to its final status.",
    ("status", "netuid", "identity"),
    buckets=JOB_BUCKETS,
)
ATTEMPT_DURATION = Histogram(
    "pylon_apply_weights_attempt_duration_seconds",
    "Duration of one attempt to set or commit weights (status: success or error).",
    ("status", "netuid", "identity"),
    buckets=ATTEMPT_BUCKETS,
)
# Every worker reads the same count from the database; livemax reports it once, from live workers only.
PENDING_JOBS = Gauge(
    "pylon_apply_weights_pending_jobs",
    "Weights jobs waiting for an attempt (pending or running).",
    multiprocess_mode="livemax",
)

# Module errors that the same weights will never get past; anything else is retried until the epoch ends.
PERMANENT_ERRORS = frozenset(
    {
        "HotKeyNotRegisteredInSubNet",
        "NeuronNoValidatorPermit",
        "WeightVecNotEqualSize",
        "DuplicateUids",
        "UidVecContainInvalidOne",
        "UidsLengthExceedUidsInSubNet",
        "WeightVecLengthIsLow",
        "IncorrectWeightVersionKey",
        "SubNetworkDoesNotExist",
        "MaxWeightExceeded",
    }
)
# Any fixed number; it names the lock that serialises claims on PostgreSQL.
CLAIM_LOCK_KEY = 7_349_001
# A PUT reuses the subnet's neurons and tempo read within this many seconds (keeps PUTs off the chain).
VIEW_TTL = 1.0

jobs = cast(Table, WeightsJob.__table__)


class JobNotFound(LookupError):
    pass


class PermanentJobError(Exception):
    """Retrying the job cannot help (e.g. none of its hotkeys is on the subnet)."""


def epoch_end(block: int, netuid: int, tempo: int) -> int:
    """Last block of the epoch containing `block`: subtensor runs a subnet's epoch when
    (block + netuid + 1) % (tempo + 1) == 0 (`blocks_until_next_epoch`)."""
    if tempo <= 0:
        return block
    return block + tempo - (block + netuid + 1) % (tempo + 1)


def backoff(attempts: int, start: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1`: start, 2x start, 4x start... never above cap."""
    return min(cap, start * 2 ** max(0, attempts - 1))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


def _superseded(now: float) -> Any:
    """Unlanded jobs made stale by a newer job of the same identity+netuid: pending ones, and running ones
    whose worker died (lapsed lease)."""
    newer = aliased(WeightsJob)
    return and_(
        or_(jobs.c.status == "pending", and_(jobs.c.status == "running", jobs.c.lease_until < now)),
        exists().where(
            newer.identity == jobs.c.identity,
            newer.netuid == jobs.c.netuid,
            newer.id > jobs.c.id,
        ),
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
        # Set by each PUT so this process's worker looks for due jobs at once instead of at its next poll.
        self.wakeup = asyncio.Event()
        # SQLite has one writer at a time and its busy handler polls with growing sleeps, so 16 requests of
        # one process fighting for the lock starve some of them for seconds; queueing them here is fair.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (queued per process on SQLite, see `_write_lock`)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

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
        validate_weights(weights, None)
        view = await self.subnet_view(netuid)
        skipped: list[str] = []
        created_block = end_block = tempo = None
        if view is not None:
            validate_weights(weights, len(view.hotkeys))
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


class WeightsWorker:
    """Claims due jobs one at a time and applies them; one per Pylon process, any number per database."""

    def __init__(self, service: WeightsService) -> None:
        self.service = service
        self.settings = service.settings
        self.engine = service.engine
        self.id = worker_id()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="weights-worker")

    async def stop(self) -> None:
        self._stopping.set()
        self.service.wakeup.set()
        if self._task is not None:
            # An attempt in flight is bounded by the chain timeouts; then its lease lets another take over.
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:
                self._task.cancel()

    async def run(self) -> None:
        log.info("weights_worker_started", worker=self.id)
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
            except Exception:
                # The database or chain hiccuped outside an attempt; keep the loop alive.
                log.exception("weights_worker_error", worker=self.id)
                worked = False
            if worked:
                continue
            self.service.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.wakeup.wait(), self.settings.weights.poll_interval)
        log.info("weights_worker_stopped", worker=self.id)

    async def run_once(self) -> bool:
        """Claim and apply at most one due job; False when none was due."""
        job_id = await self.claim()
        if job_id is None:
            return False
        await self.process(job_id)
        return True

    # ---------------------------------------------------------------------------------- claiming
    def _lease_seconds(self) -> float:
        chain = self.settings.chain
        return 3 * chain.call_timeout + chain.extrinsic_timeout + self.settings.weights.lease_margin

    def _due(self, now: float) -> Any:
        return or_(
            and_(jobs.c.status == "pending", jobs.c.next_attempt_at <= now),
            and_(jobs.c.status == "running", jobs.c.lease_until < now),
        )

    async def claim(self) -> int | None:
        """Atomically take the oldest due job, or None. See the module docstring for why this is exclusive."""
        now = time.time()
        # Both reads use the (status, next_attempt_at) index, so the cost does not grow with old jobs.
        async with self.engine.connect() as conn:
            pending = (
                await conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.status.in_(("pending", "running")))
                )
            ).scalar_one()
            due = (await conn.execute(select(jobs.c.id).where(self._due(now)).limit(1))).first() is not None
        PENDING_JOBS.set(pending)
        if not due:
            return None
        candidate = aliased(WeightsJob)
        newer = aliased(WeightsJob)
        other = aliased(WeightsJob)
        claimable = (
            select(candidate.id)
            .where(
                or_(
                    and_(candidate.status == "pending", candidate.next_attempt_at <= now),
                    and_(candidate.status == "running", candidate.lease_until < now),
                ),
                # Newest intent wins: a job with a newer sibling is superseded, never applied.
                ~exists().where(
                    newer.identity == candidate.identity,
                    newer.netuid == candidate.netuid,
                    newer.id > candidate.id,
                ),
                # One job per identity+netuid on chain at a time.
                ~exists().where(
                    other.identity == candidate.identity,
                    other.netuid == candidate.netuid,
                    other.status == "running",
                    other.lease_until >= now,
                    other.id != candidate.id,
                ),
            )
            .order_by(candidate.next_attempt_at, candidate.id)
            .limit(1)
            .scalar_subquery()
        )
        async with self.service.writing() as conn:
            if self.service.is_postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
            await conn.execute(
                update(jobs)
                .where(_superseded(now))
                .values(status="superseded", claimed_by=None, lease_until=None, finished_at=datetime.now(UTC))
            )
            job_id = (
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == claimable, self._due(now))
                    .values(
                        status="running",
                        claimed_by=self.id,
                        lease_until=now + self._lease_seconds(),
                        attempts=jobs.c.attempts + 1,
                        started_at=func.coalesce(jobs.c.started_at, datetime.now(UTC)),
                    )
                    .returning(jobs.c.id)
                )
            ).scalar_one_or_none()
        if job_id is not None:
            log.info("weights_job_claimed", job_id=job_id, worker=self.id)
        return job_id

    # ---------------------------------------------------------------------------------- applying
    async def _finish(self, job_id: int, status: str, **values: Any) -> bool:
        """Write a final status, only if this worker still holds the job (a lapsed lease loses it)."""
        async with self.service.writing() as conn:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.claimed_by == self.id, jobs.c.status == "running")
                .values(status=status, lease_until=None, finished_at=datetime.now(UTC), **values)
                .returning(jobs.c.created_at, jobs.c.identity, jobs.c.netuid)
            )
            row = result.first()
        if row is None:
            log.warning("weights_job_lease_lost", job_id=job_id, worker=self.id, status=status)
            return False
        created_at, identity, netuid = row
        JOB_DURATION.labels(status, str(netuid), identity).observe(
            max(0.0, (datetime.now(UTC) - created_at).total_seconds())
        )
        log.info("weights_job_finished", job_id=job_id, status=status, identity=identity, netuid=netuid)
        return True

    async def _retry(self, job_id: int, attempts: int, error: str) -> None:
        weights = self.settings.weights
        if attempts >= weights.max_attempts:
            await self._finish(job_id, "failed", last_error=f"{error} (gave up after {attempts} attempts)")
            return
        delay = backoff(attempts, weights.retry_start, weights.retry_cap)
        async with self.service.writing() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.claimed_by == self.id, jobs.c.status == "running")
                .values(
                    status="pending",
                    claimed_by=None,
                    lease_until=None,
                    last_error=error,
                    next_attempt_at=time.time() + delay,
                )
            )
        log.warning("weights_job_retry", job_id=job_id, attempts=attempts, delay=delay, error=error)

    async def process(self, job_id: int) -> None:
        """One attempt: read the chain at the head, map hotkeys to uids, then set or commit."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()
        job = row._mapping
        identity_name, netuid = job["identity"], job["netuid"]
        chain = self.service.chain
        identity = self.service.identities.get(identity_name)
        if identity is None or chain is None:
            reason = "no chain client" if chain is None else f"identity {identity_name!r} is not configured"
            await self._finish(job_id, "failed", last_error=reason)
            return
        timeout = self.settings.chain.call_timeout
        started = time.perf_counter()
        outcome = "error"
        try:
            head = await asyncio.wait_for(chain.head(), timeout)
            hyper = await asyncio.wait_for(chain.hyperparams(netuid, head), timeout)
            window: dict[str, Any] = {}
            end_block = job["epoch_end_block"]
            if end_block is None:
                # Made while the chain did not answer: the job is for the epoch the worker first sees.
                end_block = epoch_end(head.number, netuid, hyper.tempo)
                window = {"created_block": head.number, "epoch_end_block": end_block, "tempo": hyper.tempo}
                async with self.service.writing() as conn:
                    await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**window))
            if head.number > end_block:
                await self._finish(
                    job_id,
                    "expired",
                    last_error=job["last_error"]
                    or f"epoch ended at block {end_block} before the weights landed",
                )
                outcome = "expired"
                return
            neurons = await asyncio.wait_for(chain.neurons(netuid, head), timeout)
            uids = {n.hotkey: n.uid for n in neurons}
            weights: dict[str, float] = job["weights"]
            by_uid = {uids[h]: float(w) for h, w in weights.items() if h in uids}
            skipped = [h for h in weights if h not in uids]
            if not any(w > 0 for w in by_uid.values()):
                raise PermanentJobError(
                    f"none of the {len(weights)} hotkeys with a weight above 0 is on subnet {netuid}"
                )
            commit = hyper.commit_reveal_weights_enabled
            call = chain.commit_weights if commit else chain.set_weights
            result = await asyncio.wait_for(
                call(identity.wallet, netuid, by_uid), self.settings.chain.extrinsic_timeout
            )
            if not result.success:
                raise ExtrinsicFailed(result.error_name or "ExtrinsicFailed", result=result)
            outcome = "success"
            await self._finish(
                job_id,
                "committed" if commit else "set",
                mode="commit" if commit else "set",
                skipped_hotkeys=skipped,
                applied_block=result.block.number if result.block else head.number,
                extrinsic_hash=result.extrinsic_hash,
                reveal_round=result.reveal_round,
            )
        except PermanentJobError as exc:
            await self._finish(job_id, "failed", last_error=str(exc))
        except ExtrinsicFailed as exc:
            if exc.error_name in PERMANENT_ERRORS:
                await self._finish(job_id, "failed", last_error=str(exc))
            else:
                await self._retry(job_id, job["attempts"], str(exc))
        except UnknownNetuid as exc:
            await self._finish(job_id, "failed", last_error=str(exc))
        except TimeoutError:
            await self._retry(job_id, job["attempts"], "chain call timed out")
        except Exception as exc:
            # Chain unavailable, a dropped connection, anything unexpected: retry with backoff.
            if not isinstance(exc, ChainError | OSError):
                log.exception("weights_attempt_unexpected_error", job_id=job_id)
            await self._retry(job_id, job["attempts"], f"{type(exc).__name__}: {exc}")
        finally:
            if outcome != "expired":
                ATTEMPT_DURATION.labels(outcome, str(netuid), identity_name).observe(
                    time.perf_counter() - started
                )
