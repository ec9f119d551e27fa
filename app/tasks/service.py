"""Tasks: accepting them (a row in the queue, 202), reading them back, cancelling, stats, pruning.

`app.tasks.worker` runs them. Each accepted task is one committed row before the 202 leaves, so a
`kill -9` after the answer loses nothing. Uploaded audio and spoken results live as files under
`<data dir>/tasks/`, named by the row, deleted with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import structlog
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.context import Principal
from app.chain.metagraph import MetagraphCache
from app.inference.audio import AudioFile, remove_file
from app.jobs.queue import JobQueue, new_owner
from app.settings import TASK_KINDS, Settings
from app.tasks.languages import LANGUAGES
from app.tasks.metrics import QUEUE_DEPTH
from app.tasks.models import PRIORITIES, PRIORITY_NAMES, Task
from app.tasks.schemas import (
    SubnetStats,
    TaskAccepted,
    TaskList,
    TaskResult,
    TaskStats,
    TaskTimings,
    TaskView,
)

log = structlog.get_logger(__name__)

tasks = cast(Table, Task.__table__)
RESULT_URL = "/api/v1/tasks/{id}/result"
# An axon that was never served reports the unspecified address.
UNSERVED_IPS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104


class TaskNotFound(LookupError):
    """No such task, or not the caller's."""


class TaskConflict(Exception):
    """The task is not in a state that allows this (cancel after it started, result before it ended)."""


class TaskInputError(ValueError):
    """A field is wrong; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class TaskUnavailable(Exception):
    """No route for this kind (PYLON_TASKS_ROUTES), so nothing could run it."""


def owner_of(principal: Principal | None) -> str:
    return "anonymous" if principal is None else f"{principal.kind}:{principal.id}"


def sees_all(principal: Principal | None) -> bool:
    """Without auth configured, or with the admin token, every task is visible."""
    return principal is None or principal.kind == "admin_token"


def _iso_ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def task_view(row: Mapping[str, Any], max_attempts: int) -> TaskView:
    submitted = row["submitted_at"]
    started, finished = _iso_ts(row["started_at"]), _iso_ts(row["finished_at"])
    result = None
    if row["status"] == "completed":
        result = TaskResult(
            content_type=row["result_type"] or "text/plain",
            text=row["result_text"],
            size=row["result_size"],
            url=RESULT_URL.format(id=row["id"]),
        )
    return TaskView(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        priority=PRIORITY_NAMES.get(row["priority"], "normal"),  # type: ignore[arg-type]
        source_language=row["source_language"],
        voice=row["voice"],
        model=row["model"],
        attempts=row["attempts"],
        max_attempts=max_attempts,
        last_error=row["last_error"],
        backend=row["backend"],
        miner=row["miner"],
        scores=row["scores"],
        timings=TaskTimings(
            submitted_at=submitted,
            started_at=started,
            finished_at=finished,
            queued_seconds=round(started - submitted, 4) if started is not None else None,
            total_seconds=row["duration"],
        ),
        result=result,
    )


class ResultFile:
    """A completed task's answer: a file to stream, or text."""

    def __init__(self, content_type: str, path: str | None, text: str | None, size: int | None) -> None:
        self.content_type = content_type
        self.path = path
        self.text = text
        self.size = size


class TasksService:
    """Tasks in the database; what the controller, the CLI and the worker share."""

    def __init__(
        self, settings: Settings, engine: AsyncEngine, metagraph: MetagraphCache | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metagraph = metagraph
        self.directory = Path(settings.data_dir).resolve() / "tasks"
        self.queue = JobQueue(
            engine,
            tasks,
            new_owner(settings),
            # Priority first (0 = high), then age.
            order=lambda t: (t.c.priority, t.c.submitted_at, t.c.id),
        )
        # Set by an inference service when the app has one (the worker and stats resolve routes with it).
        self.inference: Any = None

    @property
    def upload_dir(self) -> Path:
        return self.directory / "uploads"

    @property
    def result_dir(self) -> Path:
        return self.directory / "results"

    # ------------------------------------------------------------------------------ accepting
    def route(self, kind: str) -> str:
        model = self.settings.tasks.routes.get(kind)
        if not model:
            raise TaskUnavailable(f"no model is routed for {kind} tasks (PYLON_TASKS_ROUTES)")
        return model

    def check_language(self, kind: str, language: str) -> str:
        language = language.strip().lower()
        if language not in LANGUAGES[kind]:
            supported = ", ".join(sorted(LANGUAGES[kind]))
            raise TaskInputError(
                "source_language", f"source_language {language!r} is not supported for {kind}: {supported}"
            )
        return language

    def check_priority(self, priority: str) -> int:
        if priority not in PRIORITIES:
            raise TaskInputError("priority", f"priority must be high, normal or low, got {priority!r}")
        return PRIORITIES[priority]

    async def submit(
        self,
        principal: Principal | None,
        kind: str,
        *,
        source_language: str,
        priority: str,
        text: str | None = None,
        voice: str | None = None,
        audio: AudioFile | None = None,
    ) -> TaskAccepted:
        """Validate and store one task. Raises TaskInputError (naming the field), TaskUnavailable."""
        assert kind in TASK_KINDS
        language = self.check_language(kind, source_language)
        level = self.check_priority(priority)
        model = self.route(kind)
        path = None
        if audio is not None:
            # The upload moves under the tasks folder so pruning finds it (same file system: a rename).
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            target = self.upload_dir / Path(audio.path).name
            await asyncio.to_thread(Path(audio.path).replace, target)
            path = str(target)
        now = time.time()
        try:
            async with self.queue.writing() as conn:
                task_id = (
                    await conn.execute(
                        tasks.insert()
                        .values(
                            owner=owner_of(principal),
                            kind=kind,
                            status="pending",
                            priority=level,
                            source_language=language,
                            voice=voice,
                            model=model,
                            input_text=text,
                            input_path=path,
                            input_type=audio.content_type if audio else None,
                            input_size=audio.size if audio else None,
                            attempts=0,
                            submitted_at=now,
                            next_attempt_at=now,
                        )
                        .returning(tasks.c.id)
                    )
                ).scalar_one()
        except BaseException:
            remove_file(path)
            raise
        self.queue.wakeup.set()
        log.info("task_accepted", task_id=task_id, kind=kind, priority=priority, model=model)
        return TaskAccepted(
            task_id=task_id,
            kind=kind,  # type: ignore[arg-type]
            status="pending",
            priority=priority,  # type: ignore[arg-type]
            model=model,
            url=f"/api/v1/tasks/{task_id}",
        )

    # -------------------------------------------------------------------------------- reading
    async def _row(self, principal: Principal | None, task_id: int) -> Mapping[str, Any]:
        query = select(tasks).where(tasks.c.id == task_id)
        if not sees_all(principal):
            query = query.where(tasks.c.owner == owner_of(principal))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise TaskNotFound(f"no task {task_id}")
        return dict(row._mapping)

    async def get(self, principal: Principal | None, task_id: int) -> TaskView:
        return task_view(await self._row(principal, task_id), self.settings.tasks.max_attempts)

    async def result(self, principal: Principal | None, task_id: int) -> ResultFile:
        row = await self._row(principal, task_id)
        if row["status"] != "completed":
            raise TaskConflict(f"task {task_id} is {row['status']}; its result exists once it is completed")
        return ResultFile(
            row["result_type"] or "text/plain", row["result_path"], row["result_text"], row["result_size"]
        )

    async def list(
        self,
        principal: Principal | None,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> TaskList:
        """Newest first: the caller's own tasks (the admin's: all)."""
        query = select(tasks).order_by(tasks.c.submitted_at.desc(), tasks.c.id.desc()).limit(limit)
        if not sees_all(principal):
            query = query.where(tasks.c.owner == owner_of(principal))
        if status is not None:
            query = query.where(tasks.c.status == status)
        if kind is not None:
            query = query.where(tasks.c.kind == kind)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        max_attempts = self.settings.tasks.max_attempts
        return TaskList(tasks=[task_view(dict(row._mapping), max_attempts) for row in rows])

    async def cancel(self, principal: Principal | None, task_id: int) -> TaskView:
        """Cancel a pending task (one between retries too); a running or finished one is a conflict."""
        row = await self._row(principal, task_id)
        async with self.queue.writing() as conn:
            cancelled = (
                await conn.execute(
                    update(tasks)
                    .where(tasks.c.id == task_id, tasks.c.status == "pending")
                    .values(
                        status="cancelled",
                        finished_at=datetime.now(UTC),
                        duration=round(time.time() - row["submitted_at"], 4),
                        expires_at=time.time() + self.settings.tasks.result_ttl,
                    )
                    .returning(tasks.c.input_path)
                )
            ).first()
        if cancelled is None:
            current = await self._row(principal, task_id)
            raise TaskConflict(f"task {task_id} is {current['status']}; only a pending task can be cancelled")
        remove_file(cancelled[0])
        log.info("task_cancelled", task_id=task_id)
        return await self.get(principal, task_id)

    async def stats(self) -> TaskStats:
        async with self.engine.connect() as conn:
            by_status = (
                await conn.execute(select(tasks.c.status, func.count()).group_by(tasks.c.status))
            ).all()
            by_priority = (
                await conn.execute(
                    select(tasks.c.priority, func.count())
                    .where(tasks.c.status == "pending")
                    .group_by(tasks.c.priority)
                )
            ).all()
        counts = {status: 0 for status in ("pending", "running", "completed", "failed", "cancelled")}
        counts.update({status: int(count) for status, count in by_status})
        queue = {name: 0 for name in PRIORITIES}
        queue.update({PRIORITY_NAMES.get(level, str(level)): int(count) for level, count in by_priority})
        for name, depth in queue.items():
            QUEUE_DEPTH.labels(name).set(depth)
        routes = {kind: model for kind, model in self.settings.tasks.routes.items() if model}
        return TaskStats(
            counts=counts,
            queue=queue,
            queue_size=sum(queue.values()),
            routes=routes,
            subnets=await self._subnets(routes),
        )

    async def _subnets(self, routes: dict[str, str]) -> dict[str, SubnetStats]:
        """The serving subnet's miners and stake, for each kind routed to a subnet backend."""
        found: dict[str, SubnetStats] = {}
        if self.inference is None or self.metagraph is None:
            return found
        for kind, model in routes.items():
            netuid = self.inference.subnet_of(model)
            if netuid is None:
                continue
            try:
                cached = await asyncio.wait_for(
                    self.metagraph.latest(netuid), self.settings.chain.call_timeout
                )
            except Exception as exc:
                log.warning("tasks_subnet_stats_unavailable", netuid=netuid, error=str(exc))
                continue
            neurons = list(cached.neurons.values())
            miners = [n for n in neurons if not n.validator_permit]
            available = [
                n for n in miners if n.active and n.axon_info.port > 0 and n.axon_info.ip not in UNSERVED_IPS
            ]
            found[kind] = SubnetStats(
                netuid=netuid,
                miners_total=len(miners),
                miners_available=len(available),
                total_stake=float(sum(n.stake for n in neurons)),
                block=cached.block.number,
            )
        return found

    # -------------------------------------------------------------------------------- pruning
    async def prune(self, now: float | None = None) -> int:
        """Delete finished tasks past their TTL, and their files."""
        now = time.time() if now is None else now
        async with self.queue.writing() as conn:
            rows = (
                await conn.execute(
                    delete(tasks)
                    .where(tasks.c.status.in_(("completed", "failed", "cancelled")), tasks.c.expires_at < now)
                    .returning(tasks.c.id, tasks.c.input_path, tasks.c.result_path)
                )
            ).all()
        for _, input_path, result_path in rows:
            remove_file(input_path)
            remove_file(result_path)
        if rows:
            log.info("tasks_pruned", count=len(rows))
        return len(rows)
