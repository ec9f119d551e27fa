"""Wiring tasks into a Pylon process: the service on `app.state.tasks` and the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.tasks.scoring import ScoreSink
from app.tasks.service import TasksService
from app.tasks.worker import TasksWorker

log = structlog.get_logger(__name__)


def tasks_lifespan(engine: AsyncEngine) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The lifespan hook for `create_app` (after inference's: tasks run through its router).

    A `ScoreSink` on `app.state.task_scores` (the gateway's miner records) receives every task's scores.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        service = TasksService(settings, engine, metagraph=app.state.get("metagraph"))
        service.inference = app.state.get("inference")
        app.state.tasks = service
        worker = None
        if settings.tasks.worker and service.inference is not None:
            sink: ScoreSink | None = app.state.get("task_scores")
            worker = TasksWorker(service, service.inference, sink)
            worker.start()
        log.info("tasks_ready", worker=worker is not None, routes=settings.tasks.routes)
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()

    return lifespan
