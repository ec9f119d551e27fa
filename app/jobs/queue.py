"""The one durable job mechanism: claims, leases, attempts and backoff over a table of jobs.

Weights jobs (app/weights/) and tasks (app/tasks/) are rows of their own tables sharing these columns:
`id`, `status` (`pending`, `running`, then a final status), `attempts`, `next_attempt_at` and
`lease_until` (Unix seconds: plain numbers compare the same way on SQLite and PostgreSQL), `claimed_by`,
`last_error`, `started_at`, `finished_at`. Every state change is one row update, so a killed process
loses nothing: a pending job is a row, a running one is a row under a lease.

Claiming is one statement, `UPDATE ... WHERE id = (SELECT id ... ORDER BY ... LIMIT 1) AND <due>
RETURNING *`, so exactly one worker gets a row across workers and instances:
- SQLite: the statement is the transaction's first, and a write, so it runs under the database's one
  write lock from its first read (what BEGIN IMMEDIATE gives); no two claims interleave.
- PostgreSQL: the subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent claims pass over each other's
  candidates instead of queueing on them, and the outer `<due>` is re-checked on the locked row. A table
  whose claim depends on other rows (weights: one running job per identity+netuid) passes a
  `serialize_key` instead: the claim transaction takes `pg_advisory_xact_lock(key)` first, which
  serialises claims so each sees every claim committed before it.

Leases name their owner: `claimed_by` is `<instance>/<boot>/<worker>`. A running job is due again when
its lease lapses (its worker died or hung), and at once when it was claimed by this same instance in an
earlier boot: the instance was restarted, so nothing of that boot can still be working on it. Other
instances wait the lease out, since they cannot know the holder is gone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog
from sqlalchemy import ColumnElement, FromClause, Table, and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.settings import Settings

log = structlog.get_logger(__name__)


def new_boot_id() -> str:
    """Boot ids sort by start time (fixed-width hex milliseconds), so a boot knows which are older."""
    return f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:6]}"


# One boot per process unless `pylon serve` names one for all its workers (PYLON_JOBS_BOOT_ID).
PROCESS_BOOT = new_boot_id()
INSTANCE_FILE = "instance-id"


def backoff(attempts: int, start: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1`: start, 2x start, 4x start... never above cap."""
    return min(cap, start * 2 ** max(0, attempts - 1))


class Owner(msgspec.Struct, frozen=True):
    """Who holds a lease: this instance, this boot of it, this worker."""

    instance: str
    boot: str
    worker: str

    @property
    def tag(self) -> str:
        return f"{self.instance}/{self.boot}/{self.worker}"

    def escaped(self, value: str) -> str:
        return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def instance_id(settings: Settings) -> str:
    """PYLON_JOBS_INSTANCE_ID, else an id kept in the data dir (made once, atomically)."""
    if settings.jobs.instance_id:
        return settings.jobs.instance_id
    path = Path(settings.data_dir) / INSTANCE_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f"{INSTANCE_FILE}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    candidate.write_text(uuid.uuid4().hex[:12])
    try:
        # link() fails when another worker won the race: everyone then reads the winner's id.
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_text().strip()


def new_owner(settings: Settings) -> Owner:
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # `/` separates the parts of a lease's owner; keep it out of the parts.
    worker = worker.replace("/", "-")
    return Owner(
        instance=instance_id(settings).replace("/", "-"),
        boot=(settings.jobs.boot_id or PROCESS_BOOT).replace("/", "-"),
        worker=worker,
    )


Conditions = Callable[[FromClause], Sequence[ColumnElement[bool]]]
Order = Callable[[FromClause], Sequence[Any]]


class JobQueue:
    """Claim, finish and retry rows of one job table; one per table per process.

    `wakeup` is set by whoever adds a job in this process, so its worker looks at once instead of at its
    next poll; other processes find the job at their poll (a short interval: see the tasks settings).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        owner: Owner,
        *,
        order: Order,
        serialize_key: int | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.owner = owner
        self.order = order
        self.serialize_key = serialize_key
        self.is_postgres = engine.dialect.name == "postgresql"
        self.wakeup = asyncio.Event()
        # SQLite has one writer at a time and its busy handler polls with growing sleeps, so many requests
        # of one process fighting for the lock starve some of them for seconds; queueing them here is fair.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    def with_owner(self, owner: Owner) -> JobQueue:
        """The same queue (engine, write lock, wakeup) claiming as another worker."""
        other = JobQueue(self.engine, self.table, owner, order=self.order, serialize_key=self.serialize_key)
        other.wakeup = self.wakeup
        other._write_lock = self._write_lock
        return other

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (queued per process on SQLite, see `_write_lock`)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------------------------ claiming
    def interrupted(self, t: FromClause) -> ColumnElement[bool]:
        """Running jobs this instance claimed in an earlier boot: nobody is working on them any more.

        Only older boots (ids sort by start time): a boot still running beside a newer one (two processes
        on one data dir) never takes the newer one's jobs."""
        claimed_by = t.c.claimed_by
        instance = self.owner.escaped(self.owner.instance)
        return and_(
            claimed_by.like(f"{instance}/%", escape="\\"),
            claimed_by < f"{self.owner.instance}/{self.owner.boot}/",
        )

    def due(self, t: FromClause, now: float) -> ColumnElement[bool]:
        """Pending and due, or running under a lease that lapsed or belonged to this instance's last boot."""
        return or_(
            and_(t.c.status == "pending", t.c.next_attempt_at <= now),
            and_(t.c.status == "running", or_(t.c.lease_until < now, self.interrupted(t))),
        )

    async def claim(
        self,
        lease_seconds: float | Callable[[Mapping[str, Any]], float],
        *,
        conditions: Conditions | None = None,
        before: Callable[[AsyncConnection, float], Awaitable[None]] | None = None,
        now: float | None = None,
    ) -> Mapping[str, Any] | None:
        """Take the first due job by `order` (with `conditions` on the candidate), or None.

        `before` runs first in the same transaction (weights sweep superseded jobs there). A callable
        `lease_seconds` is given the claimed row and its lease is then set to its answer (tasks: per kind).
        """
        now = time.time() if now is None else now
        t = self.table
        candidate = t.alias("candidate")
        query = select(candidate.c.id).where(
            self.due(candidate, now), *(conditions(candidate) if conditions else ())
        )
        query = query.order_by(*self.order(candidate)).limit(1)
        if self.is_postgres and self.serialize_key is None:
            query = query.with_for_update(skip_locked=True)
        fixed = lease_seconds if isinstance(lease_seconds, int | float) else 0.0
        async with self.writing() as conn:
            if self.is_postgres and self.serialize_key is not None:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.serialize_key})
            if before is not None:
                await before(conn, now)
            row = (
                await conn.execute(
                    update(t)
                    .where(t.c.id == query.scalar_subquery(), self.due(t, now))
                    .values(
                        status="running",
                        claimed_by=self.owner.tag,
                        lease_until=now + fixed,
                        attempts=t.c.attempts + 1,
                        started_at=func.coalesce(t.c.started_at, datetime.now(UTC)),
                    )
                    .returning(*t.c)
                )
            ).first()
            if row is None:
                return None
            claimed = dict(row._mapping)
            if callable(lease_seconds):
                lease = now + lease_seconds(claimed)
                await conn.execute(update(t).where(t.c.id == claimed["id"]).values(lease_until=lease))
                claimed["lease_until"] = lease
        return claimed

    # ----------------------------------------------------------------------------------- settling
    def _held(self, job_id: int) -> ColumnElement[bool]:
        t = self.table
        return and_(t.c.id == job_id, t.c.claimed_by == self.owner.tag, t.c.status == "running")

    async def finish(
        self, job_id: int, status: str, returning: Sequence[str] = ("id",), **values: Any
    ) -> Mapping[str, Any] | None:
        """Write a final status, only if this worker still holds the job (a lapsed lease loses it)."""
        t = self.table
        async with self.writing() as conn:
            row = (
                await conn.execute(
                    update(t)
                    .where(self._held(job_id))
                    .values(status=status, lease_until=None, finished_at=datetime.now(UTC), **values)
                    .returning(*(t.c[name] for name in returning))
                )
            ).first()
        if row is None:
            log.warning("job_lease_lost", table=t.name, job_id=job_id, worker=self.owner.tag, status=status)
            return None
        return dict(row._mapping)

    async def retry(self, job_id: int, error: str, delay: float, **values: Any) -> bool:
        """Put a held job back to pending for another attempt `delay` seconds from now."""
        async with self.writing() as conn:
            result = await conn.execute(
                update(self.table)
                .where(self._held(job_id))
                .values(
                    status="pending",
                    claimed_by=None,
                    lease_until=None,
                    last_error=error,
                    next_attempt_at=time.time() + delay,
                    **values,
                )
            )
        return bool(result.rowcount)
