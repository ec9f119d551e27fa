"""The worker that claims due weights jobs and lands them on chain, one attempt at a time.

Claims, leases, attempts and backoff are the shared job mechanism's (app/jobs/queue.py; its docstring
says why a claim is exclusive on SQLite and PostgreSQL, and how a restarted instance takes back its own
interrupted jobs at once). What is particular to weights rides on it as claim conditions: "one job per
identity+netuid on chain at a time" (no other live `running` job) and "newest intent wins" (no newer job
for the same pair; older ones are swept to `superseded` in the claim's transaction). Those conditions
read other rows, so on PostgreSQL weights claims are serialised by an advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from app.chain.client import (
    BlockInfo,
    ChainClient,
    ChainError,
    ExtrinsicFailed,
    ExtrinsicResult,
    SubnetHyperparams,
    UnknownNetuid,
)
from app.jobs.queue import JobQueue, backoff, new_owner
from app.weights.identities import Identity
from app.weights.metrics import ATTEMPT_DURATION, JOB_DURATION, PENDING_JOBS
from app.weights.models import WeightsJob
from app.weights.service import WeightsService, epoch_end, jobs

log = structlog.get_logger(__name__)

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


class PermanentJobError(Exception):
    """Retrying the job cannot help (e.g. none of its hotkeys is on the subnet)."""


def _superseded(now: float, queue: JobQueue) -> Any:
    """Unlanded jobs made stale by a newer job of the same identity+netuid: pending ones, and running ones
    whose worker died (lapsed lease, or this instance's previous boot)."""
    newer = aliased(WeightsJob)
    return and_(
        or_(
            jobs.c.status == "pending",
            and_(jobs.c.status == "running", or_(jobs.c.lease_until < now, queue.interrupted(jobs))),
        ),
        exists().where(
            newer.identity == jobs.c.identity,
            newer.netuid == jobs.c.netuid,
            newer.id > jobs.c.id,
        ),
    )


class WeightsWorker:
    """Claims due jobs one at a time and applies them; one per Pylon process, any number per database."""

    def __init__(self, service: WeightsService) -> None:
        self.service = service
        self.settings = service.settings
        self.engine = service.engine
        self.queue = service.queue.with_owner(new_owner(self.settings))
        self.id = self.queue.owner.tag
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

    async def claim(self) -> int | None:
        """Atomically take the oldest due job, or None (app/jobs/queue.py says why this is exclusive)."""
        now = time.time()
        # Both reads use the (status, next_attempt_at) index, so the cost does not grow with old jobs.
        async with self.engine.connect() as conn:
            pending = (
                await conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.status.in_(("pending", "running")))
                )
            ).scalar_one()
            due = (
                await conn.execute(select(jobs.c.id).where(self.queue.due(jobs, now)).limit(1))
            ).first() is not None
        PENDING_JOBS.set(pending)
        if not due:
            return None

        def conditions(candidate: Any) -> list[Any]:
            newer, other = jobs.alias("newer"), jobs.alias("other")
            return [
                # Newest intent wins: a job with a newer sibling is superseded, never applied.
                ~exists().where(
                    newer.c.identity == candidate.c.identity,
                    newer.c.netuid == candidate.c.netuid,
                    newer.c.id > candidate.c.id,
                ),
                # One job per identity+netuid on chain at a time.
                ~exists().where(
                    other.c.identity == candidate.c.identity,
                    other.c.netuid == candidate.c.netuid,
                    other.c.status == "running",
                    other.c.lease_until >= now,
                    ~self.queue.interrupted(other),
                    other.c.id != candidate.c.id,
                ),
            ]

        async def sweep(conn: AsyncConnection, now: float) -> None:
            await conn.execute(
                update(jobs)
                .where(_superseded(now, self.queue))
                .values(status="superseded", claimed_by=None, lease_until=None, finished_at=datetime.now(UTC))
            )

        row = await self.queue.claim(self._lease_seconds(), conditions=conditions, before=sweep, now=now)
        if row is None:
            return None
        job_id = int(row["id"])
        log.info("weights_job_claimed", job_id=job_id, worker=self.id)
        return job_id

    # ---------------------------------------------------------------------------------- applying
    async def process(self, job_id: int) -> None:
        """One attempt: read the chain at the head, map hotkeys to uids, then set or commit."""
        job = await self._load(job_id)
        identity_name, netuid = job["identity"], job["netuid"]
        chain = self.service.chain
        identity = self.service.identities.get(identity_name)
        if identity is None or chain is None:
            reason = "no chain client" if chain is None else f"identity {identity_name!r} is not configured"
            await self._finish(job_id, "failed", last_error=reason)
            return
        started = time.perf_counter()
        outcome = "error"
        try:
            head, hyper = await self._read_head(chain, netuid)
            end_block = await self._epoch_end_block(job, head, hyper.tempo)
            if head.number > end_block:
                await self._expire(job, end_block)
                outcome = "expired"
                return
            by_uid, skipped = await self._weights_by_uid(chain, job, head)
            commit = hyper.commit_reveal_weights_enabled
            result = await self._send(chain, identity, netuid, by_uid, commit=commit)
            # Counted a success once on chain, even if recording it below fails.
            outcome = "success"
            await self._record_landed(job_id, result, head, skipped, commit=commit)
        except Exception as exc:
            await self._settle_failure(job, exc)
        finally:
            # An expired job never tried to set or commit, so it is no attempt.
            if outcome != "expired":
                ATTEMPT_DURATION.labels(outcome, str(netuid), identity_name).observe(
                    time.perf_counter() - started
                )

    async def _load(self, job_id: int) -> Mapping[Any, Any]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()
        return row._mapping

    async def _read_head(self, chain: ChainClient, netuid: int) -> tuple[BlockInfo, SubnetHyperparams]:
        timeout = self.settings.chain.call_timeout
        head = await asyncio.wait_for(chain.head(), timeout)
        hyper = await asyncio.wait_for(chain.hyperparams(netuid, head), timeout)
        return head, hyper

    async def _epoch_end_block(self, job: Mapping[Any, Any], head: BlockInfo, tempo: int) -> int:
        """The last block the job may land in."""
        end_block: int | None = job["epoch_end_block"]
        if end_block is not None:
            return end_block
        # Made while the chain did not answer: the job is for the epoch the worker first sees.
        end_block = epoch_end(head.number, job["netuid"], tempo)
        window = {"created_block": head.number, "epoch_end_block": end_block, "tempo": tempo}
        async with self.service.writing() as conn:
            await conn.execute(update(jobs).where(jobs.c.id == job["id"]).values(**window))
        return end_block

    async def _expire(self, job: Mapping[Any, Any], end_block: int) -> None:
        await self._finish(
            job["id"],
            "expired",
            last_error=job["last_error"] or f"epoch ended at block {end_block} before the weights landed",
        )

    async def _weights_by_uid(
        self, chain: ChainClient, job: Mapping[Any, Any], head: BlockInfo
    ) -> tuple[dict[int, float], list[str]]:
        """The job's weights keyed by uid at `head`, and the hotkeys not on the subnet there."""
        neurons = await asyncio.wait_for(chain.neurons(job["netuid"], head), self.settings.chain.call_timeout)
        uids = {n.hotkey: n.uid for n in neurons}
        weights: dict[str, float] = job["weights"]
        by_uid = {uids[h]: float(w) for h, w in weights.items() if h in uids}
        skipped = [h for h in weights if h not in uids]
        if not any(w > 0 for w in by_uid.values()):
            raise PermanentJobError(
                f"none of the {len(weights)} hotkeys with a weight above 0 is on subnet {job['netuid']}"
            )
        return by_uid, skipped

    async def _send(
        self, chain: ChainClient, identity: Identity, netuid: int, by_uid: dict[int, float], *, commit: bool
    ) -> ExtrinsicResult:
        call = chain.commit_weights if commit else chain.set_weights
        result = await asyncio.wait_for(
            call(identity.wallet, netuid, by_uid), self.settings.chain.extrinsic_timeout
        )
        if not result.success:
            raise ExtrinsicFailed(result.error_name or "ExtrinsicFailed", result=result)
        return result

    async def _record_landed(
        self, job_id: int, result: ExtrinsicResult, head: BlockInfo, skipped: list[str], *, commit: bool
    ) -> None:
        await self._finish(
            job_id,
            "committed" if commit else "set",
            mode="commit" if commit else "set",
            skipped_hotkeys=skipped,
            applied_block=result.block.number if result.block else head.number,
            extrinsic_hash=result.extrinsic_hash,
            reveal_round=result.reveal_round,
        )

    async def _settle_failure(self, job: Mapping[Any, Any], exc: Exception) -> None:
        """Fail the job when retrying cannot help; otherwise schedule its next attempt."""
        job_id, attempts = job["id"], job["attempts"]
        match exc:
            case PermanentJobError() | UnknownNetuid():
                await self._finish(job_id, "failed", last_error=str(exc))
            case ExtrinsicFailed() if exc.error_name in PERMANENT_ERRORS:
                await self._finish(job_id, "failed", last_error=str(exc))
            case ExtrinsicFailed():
                await self._retry(job_id, attempts, str(exc))
            case TimeoutError():
                await self._retry(job_id, attempts, "chain call timed out")
            case _:
                # Chain unavailable, a dropped connection, anything unexpected: retry with backoff.
                if not isinstance(exc, ChainError | OSError):
                    log.exception("weights_attempt_unexpected_error", job_id=job_id)
                await self._retry(job_id, attempts, f"{type(exc).__name__}: {exc}")

    async def _finish(self, job_id: int, status: str, **values: Any) -> bool:
        """Write a final status, only if this worker still holds the job (a lapsed lease loses it)."""
        row = await self.queue.finish(
            job_id, status, returning=("created_at", "identity", "netuid"), **values
        )
        if row is None:
            return False
        created_at, identity, netuid = row["created_at"], row["identity"], row["netuid"]
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
        await self.queue.retry(job_id, error, delay)
        log.warning("weights_job_retry", job_id=job_id, attempts=attempts, delay=delay, error=error)
