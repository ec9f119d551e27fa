"""Migrations up and down on a real SQLite file and on the real PostgreSQL server; models agree with them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import MIGRATIONS_DIR, VERSION_TABLE, create_engine, load_models, migrations
from app.settings import Settings

from .conftest import SettingsFactory


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def run_sync(url: str, work: Any) -> Any:
    """Run `work(sync_connection)` on a throwaway engine (NullPool: nothing outlives the call)."""

    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def current_revision(url: str) -> str | None:
    def read(conn: Any) -> str | None:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    return run_sync(url, read)


def table_names(url: str) -> set[str]:
    return set(run_sync(url, lambda conn: inspect(conn).get_table_names()))


def schema_diff(url: str) -> list[Any]:
    """What alembic's autogenerate would write to bring the database to the models (empty: they agree)."""
    metadata = load_models()

    def compare(conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE, "render_as_batch": True}
        )
        return list(compare_metadata(context, metadata))

    return run_sync(url, compare)


def assert_round_trip(settings: Settings) -> None:
    url = settings.database_url
    commands = migrations(settings)
    commands.upgrade("head")
    assert current_revision(url) == head_revision()
    # Every table the models declare exists once migrated (tables added by any branch are covered).
    assert {table.name for table in load_models().sorted_tables} <= table_names(url)
    assert schema_diff(url) == []

    commands.downgrade("base")
    assert current_revision(url) is None
    # Down to base leaves nothing of the models behind, only alembic's own bookkeeping.
    assert table_names(url) - {VERSION_TABLE} == set()

    # And up again: downgrades leave a database the upgrades accept.
    commands.upgrade("head")
    assert current_revision(url) == head_revision()
    assert schema_diff(url) == []


def test_sqlite_migrates_up_and_down(settings: Settings) -> None:
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert_round_trip(settings)
    assert Path(settings.database_url.split("///", 1)[1]).is_file()


@pytest.mark.postgres
def test_postgres_migrates_up_and_down(settings_factory: SettingsFactory, postgres_url: str) -> None:
    settings = settings_factory(PYLON_DB_URL=postgres_url)
    assert_round_trip(settings)


def test_every_revision_steps_down_one_at_a_time(settings: Settings) -> None:
    """Each downgrade undoes exactly its own upgrade, walking back from head to base step by step."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    revisions = [rev.revision for rev in script.walk_revisions()]  # head first
    commands = migrations(settings)
    commands.upgrade("head")
    for revision in revisions:
        assert current_revision(settings.database_url) == revision
        commands.downgrade("-1")
    assert current_revision(settings.database_url) is None


def test_migrations_are_a_single_line(settings: Settings) -> None:
    """Two heads mean two branches added revisions on the same parent: the merge must fix down_revision."""
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"several alembic heads: {heads}"


async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
            busy_timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await engine.dispose()
    assert journal == "wal"
    assert foreign_keys == 1
    assert busy_timeout == 10000


async def test_sqlite_creates_its_data_dir(settings_factory: SettingsFactory, tmp_path: Path) -> None:
    settings = settings_factory(PYLON_DATA_DIR=str(tmp_path / "deep" / "er"))
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
    assert (tmp_path / "deep" / "er" / "pylon.sqlite3").is_file()


def test_schema_diff_sees_drift(settings: Settings) -> None:
    """The agreement check is live: a table the models do not declare shows up as a difference."""
    migrations(settings).upgrade("head")

    def add_stray_table(conn: Any) -> None:
        conn.exec_driver_sql("CREATE TABLE stray_probe (id INTEGER PRIMARY KEY)")
        conn.commit()

    run_sync(settings.database_url, add_stray_table)
    diff = schema_diff(settings.database_url)
    assert [entry[0] for entry in diff] == ["remove_table"]
    assert diff[0][1].name == "stray_probe"


async def test_migrations_can_be_called_from_async_code(settings: Settings) -> None:
    """alembic drives its own event loop; inside a running one it moves to a thread instead of failing."""
    from app.db import current_revision

    migrations(settings).upgrade("head")
    assert current_revision(settings) == head_revision()
