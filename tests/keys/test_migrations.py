"""Keys migrations on SQLite and PostgreSQL: up, down, up again, no diff against the models, and 0004 keeping
the usage totals of existing rows both ways."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import VERSION_TABLE, create_engine, load_models, migrations
from app.keys.models import UsageBucket
from app.keys.usage_buffer import UsageRecorder
from app.keys.usage_report import usage_report_rows
from app.settings import Settings

T = TypeVar("T")

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


# Rows of the old per-request table (revision 0003): key id, kind, created_at, method, route, status, model,
# prompt and completion tokens, latency in ms.
UTC = dt.UTC
OLD_ROWS = [
    ("k1", "api_key", dt.datetime(2027, 1, 15, 8, 0, 5, 123456, UTC), "POST", "/c", 200, "m", 1, 10, 1.0),
    ("k1", "api_key", dt.datetime(2027, 1, 15, 8, 0, 59, 999999, UTC), "POST", "/c", 200, "m", 2, 20, 5.0),
    ("k1", "api_key", dt.datetime(2027, 1, 15, 8, 0, 30, 0, UTC), "POST", "/c", 200, "m", 3, 30, 3.0),
    ("k1", "api_key", dt.datetime(2027, 1, 15, 8, 1, 0, 1, UTC), "POST", "/c", 404, None, 0, 0, 0.5),
    ("k1", "api_key", dt.datetime(2027, 1, 15, 23, 59, 59, 500000, UTC), "GET", "/m", 200, None, 0, 0, 0.25),
    ("k1", "api_key", dt.datetime(2027, 1, 16, 0, 0, 10, 0, UTC), "GET", "/m", 200, None, 0, 0, 0.75),
    ("k1", "api_key", dt.datetime(2027, 1, 16, 0, 0, 20, 0, UTC), "GET", "/m", 200, None, 0, 0, 0.25),
    ("5Hot", "epistula", dt.datetime(2027, 1, 15, 8, 0, 1, 0, UTC), "POST", "/c", 500, "x", 7, 0, 2.0),
]
OLD_TABLE = sa.table(
    "api_key_usage",
    sa.column("key_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("day", sa.Date()),
    sa.column("created_at", DateTimeUTC(timezone=True)),
    sa.column("method", sa.String()),
    sa.column("route", sa.String()),
    sa.column("status", sa.Integer()),
    sa.column("model", sa.String()),
    sa.column("prompt_tokens", sa.Integer()),
    sa.column("completion_tokens", sa.Integer()),
    sa.column("latency_ms", sa.Float()),
)
FIELDS = ("key_id", "kind", "created_at", "method", "route", "status", "model")
BUCKET_FIELDS = (
    *("key_id", "kind", "minute", "day", "method", "route", "status", "model"),
    *("requests", "prompt_tokens", "completion_tokens", "latency_ms_total", "latency_ms_max"),
)


def expected_buckets(rows: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """The buckets the old rows should become, computed here in Python."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for key_id, kind, at, method, route, status, model, prompt, completion, latency in rows:
        minute = at.replace(second=0, microsecond=0)
        key = (key_id, kind, minute, minute.date(), method, route, status, model or "")
        bucket = sums.setdefault(key, [0, 0, 0, 0.0, 0.0])
        bucket[0] += 1
        bucket[1] += prompt
        bucket[2] += completion
        bucket[3] += latency
        bucket[4] = max(bucket[4], latency)
    return {(*key, *values) for key, values in sums.items()}


def run_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(settings)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def insert_old_rows(session: AsyncSession) -> None:
    rows = [
        dict(zip((*FIELDS, "prompt_tokens", "completion_tokens", "latency_ms"), r, strict=True))
        for r in OLD_ROWS
    ]
    await session.execute(sa.insert(OLD_TABLE), [{**row, "day": row["created_at"].date()} for row in rows])
    await session.commit()


async def read_buckets(session: AsyncSession) -> set[tuple[Any, ...]]:
    buckets = (await session.scalars(sa.select(UsageBucket))).all()
    return {tuple(getattr(b, name) for name in BUCKET_FIELDS) for b in buckets}


async def read_old_totals(session: AsyncSession) -> list[tuple[Any, ...]]:
    """Per key and day: rows (requests), errors, prompt and completion tokens of the per-request table."""
    errors = sa.func.sum(sa.case((OLD_TABLE.c.status >= 400, 1), else_=0))
    query = (
        sa.select(
            OLD_TABLE.c.key_id,
            OLD_TABLE.c.day,
            sa.func.count(),
            errors,
            sa.func.sum(OLD_TABLE.c.prompt_tokens),
            sa.func.sum(OLD_TABLE.c.completion_tokens),
        )
        .group_by(OLD_TABLE.c.key_id, OLD_TABLE.c.day)
        .order_by(OLD_TABLE.c.key_id, OLD_TABLE.c.day)
    )
    return [
        tuple(int(v) if isinstance(v, int) else v for v in row)
        for row in (await session.execute(query)).all()
    ]


async def report_totals(session: AsyncSession) -> list[tuple[Any, ...]]:
    """The same, from the reports' query on the buckets."""
    result = []
    for key_id in ("5Hot", "k1"):
        for day, n, e, p, c in await usage_report_rows(session, key_id, dt.date(2027, 1, 1)):
            result.append((key_id, day, n, e, p, c))
    return result


def test_upgrade_sums_existing_rows_into_buckets_and_downgrade_expands_them(any_settings: Settings) -> None:
    commands = migrations(any_settings)
    commands.upgrade("0003")
    run_db(any_settings, insert_old_rows)
    before = run_db(any_settings, read_old_totals)
    assert before == [
        ("5Hot", dt.date(2027, 1, 15), 1, 1, 7, 0),
        ("k1", dt.date(2027, 1, 15), 5, 1, 6, 60),
        ("k1", dt.date(2027, 1, 16), 2, 0, 0, 0),
    ]

    commands.upgrade("head")
    assert run_db(any_settings, read_buckets) == expected_buckets(OLD_ROWS)
    assert run_db(any_settings, report_totals) == before
    assert inspect_db(any_settings)[1] == []

    # The app's upsert lands on a migrated bucket (same minute, same stored form), adding to it.
    async def one_more_request(session: AsyncSession) -> None:
        clock = dt.datetime(2027, 1, 15, 8, 0, 42, tzinfo=UTC).timestamp
        recorder = UsageRecorder(async_sessionmaker(session.bind, expire_on_commit=False), clock=clock)
        recorder.record("k1", "api_key", "POST", "/c", 200, "m", 4, 40, 9.0)
        await recorder.flush()

    run_db(any_settings, one_more_request)
    buckets = run_db(any_settings, read_buckets)
    assert len(buckets) == len(expected_buckets(OLD_ROWS))
    merged = [b for b in buckets if b[2] == dt.datetime(2027, 1, 15, 8, 0, tzinfo=UTC) and b[0] == "k1"]
    assert [b[8:] for b in merged] == [(4, 10, 100, 18.0, 9.0)]
    after = [
        ("5Hot", dt.date(2027, 1, 15), 1, 1, 7, 0),
        ("k1", dt.date(2027, 1, 15), 6, 1, 10, 100),
        before[2],
    ]

    commands.downgrade("0003")
    assert run_db(any_settings, read_old_totals) == after
    commands.upgrade("head")
    assert run_db(any_settings, report_totals) == after
