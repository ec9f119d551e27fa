"""Migration 0002 on SQLite and PostgreSQL: up, down, up again, and no diff against the models."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import VERSION_TABLE, create_engine, load_models, migrations
from app.settings import Settings

KEY_TABLES = {"api_keys", "api_key_changes", "api_key_rate_windows", "api_key_usage_buckets"}


@pytest.fixture(params=["sqlite", "postgres"])
def any_settings(request: pytest.FixtureRequest, settings_factory: Any) -> Settings:
    if request.param == "postgres":
        settings: Settings = settings_factory(PYLON_DB_URL=request.getfixturevalue("postgres_url"))
        return settings
    return settings_factory()  # type: ignore[no-any-return]


def inspect_db(settings: Settings) -> tuple[set[str], list[Any]]:
    metadata = load_models()

    def run(connection: Any) -> tuple[set[str], list[Any]]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _parent: not (type_ == "table" and name == VERSION_TABLE),
            },
        )
        return set(inspect(connection).get_table_names()), compare_metadata(context, metadata)

    async def main() -> tuple[set[str], list[Any]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(run)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_upgrade_downgrade_and_no_autogenerate_diff(any_settings: Settings) -> None:
    commands = migrations(any_settings)
    commands.upgrade("head")
    tables, diff = inspect_db(any_settings)
    assert tables >= KEY_TABLES
    assert diff == []
    commands.downgrade("0001")
    tables, _ = inspect_db(any_settings)
    assert not tables & KEY_TABLES
    commands.upgrade("head")
    tables, diff = inspect_db(any_settings)
    assert tables >= KEY_TABLES and diff == []
