"""The database: one advanced-alchemy config for SQLite (embedded default) or PostgreSQL, and migrations."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.base import orm_registry
from advanced_alchemy.extensions.litestar import AlembicAsyncConfig, AsyncSessionConfig, SQLAlchemyAsyncConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "alembic"
VERSION_TABLE = "alembic_versions"

# Every module that declares tables; alembic's autogenerate and the tests import them all from here.
MODEL_MODULES: tuple[str, ...] = (
    "app.keys.models",
    "app.weights.models",
    "app.tasks.models",
    "app.gateway.models",
)


def load_models() -> MetaData:
    """Import every model module so the shared metadata knows every table."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return orm_registry.metadata


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers run beside the one writer; busy_timeout makes writers from several granian workers
    # wait for each other instead of failing with "database is locked". It comes first so that switching
    # to WAL (a moment of exclusive access, the first time) waits too. In WAL, synchronous=NORMAL survives
    # application crashes and saves an fsync per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if settings.db.echo:
        # Not `echo=True`: that adds SQLAlchemy's own stdout handler, printing every statement a second
        # time outside the structured log. Raising the level sends them through Pylon's formatter.
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    if is_sqlite(url):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db.pool_size,
        max_overflow=settings.db.max_overflow,
        pool_pre_ping=True,
    )


def alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy's config for the app and for migrations."""
    load_models()
    return SQLAlchemyAsyncConfig(
        engine_instance=create_engine(settings),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        create_all=False,
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            script_config=str(PROJECT_ROOT / "alembic.ini"),
            version_table_name=VERSION_TABLE,
            render_as_batch=True,
            compare_type=True,
        ),
    )


def migrations(settings: Settings) -> AlembicCommands:
    """Alembic commands bound to this database (call from sync code: alembic runs its own loop)."""
    return AlembicCommands(sqlalchemy_config=alchemy_config(settings))


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller is itself inside an event loop.

    alembic's env.py and `current_revision()` drive async engines from sync functions; called from async
    code (a test, a lifespan hook), `asyncio.run` would refuse, so they get a loop in a thread of their own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pylon-db") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def head_revision() -> str | None:
    """The newest migration in alembic/versions."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at; None when no migration has been applied."""

    def read(connection: Connection) -> str | None:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    async def run() -> str | None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return run_blocking(run())


__all__ = [
    "MODEL_MODULES",
    "Engine",
    "alchemy_config",
    "current_revision",
    "head_revision",
    "load_models",
    "migrations",
    "run_blocking",
]
