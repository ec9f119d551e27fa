"""Usage reports: per-day totals of a key (or Epistula signer) read from the usage buckets."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.keys.models import UsageBucket


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


async def usage_report_rows(
    session: AsyncSession, key_id: str, since: dt.date
) -> list[tuple[dt.date, int, int, int, int]]:
    """(day, requests, errors, prompt tokens, completion tokens) per day since `since`, from the buckets."""
    errors = func.sum(case((UsageBucket.status >= 400, UsageBucket.requests), else_=0))
    result = await session.execute(
        select(
            UsageBucket.day,
            func.sum(UsageBucket.requests),
            errors,
            func.sum(UsageBucket.prompt_tokens),
            func.sum(UsageBucket.completion_tokens),
        )
        # On minute, not day: the primary key (key_id, minute, ...) serves this filter.
        .where(UsageBucket.key_id == key_id, UsageBucket.minute >= day_start(since))
        .group_by(UsageBucket.day)
        .order_by(UsageBucket.day)
    )
    return [(day, int(n), int(e or 0), int(p or 0), int(c or 0)) for day, n, e, p, c in result.all()]


async def has_usage(session: AsyncSession, key_id: str) -> bool:
    """Whether any bucket names this id (how an Epistula hotkey, which has no key row, is known)."""
    found = await session.scalar(select(UsageBucket.key_id).where(UsageBucket.key_id == key_id).limit(1))
    return found is not None
