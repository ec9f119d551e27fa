"""usage buckets: per-minute usage counters replace the row per request.

Upgrade sums the rows of `api_key_usage` into `api_key_usage_buckets` (one per key, kind, UTC minute, method,
route, status and model), then drops `api_key_usage`: every total the reports show is kept. Downgrade
expands each bucket back into one row per request (created at the minute's start, tokens spread over the
rows, the bucket's mean latency), so the reports' totals survive the round trip too.

Both directions are one INSERT ... SELECT in the database (no rows through Python); only the expression
for "the minute of created_at" differs between SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite autoincrements only an `INTEGER PRIMARY KEY`.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The minute and day of `created_at`, in the same form the app writes them (so later upserts from the app
# land on these rows). SQLite stores a DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) and a Date as
# 'YYYY-MM-DD'; PostgreSQL's timestamptz is converted to UTC before it is truncated.
MINUTE_AND_DAY = {
    "sqlite": ("strftime('%Y-%m-%d %H:%M:00.000000', created_at)", "date(created_at)"),
    "postgresql": (
        "date_trunc('minute', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "CAST((created_at AT TIME ZONE 'UTC') AS date)",
    ),
}

ROWS_TO_BUCKETS = """
INSERT INTO api_key_usage_buckets (key_id, kind, minute, day, method, route, status, model, requests,
    prompt_tokens, completion_tokens, latency_ms_total, latency_ms_max)
SELECT key_id, kind, minute, day, method, route, status, model, count(*),
    sum(prompt_tokens), sum(completion_tokens), sum(latency_ms), max(latency_ms)
FROM (
    SELECT key_id, kind, {minute} AS minute, {day} AS day, method, route, status,
        coalesce(model, '') AS model, prompt_tokens, completion_tokens, latency_ms
    FROM api_key_usage
) AS per_request
GROUP BY key_id, kind, minute, day, method, route, status, model
"""

# Row n (1..requests) of a bucket gets tokens // requests, plus one while n <= the remainder.
BUCKETS_TO_ROWS = """
WITH RECURSIVE seq(n) AS (
    SELECT 1
    UNION ALL
    SELECT n + 1 FROM seq WHERE n < (SELECT max(requests) FROM api_key_usage_buckets)
)
INSERT INTO api_key_usage (key_id, kind, day, created_at, method, route, status, latency_ms, model,
    prompt_tokens, completion_tokens)
SELECT b.key_id, b.kind, b.day, b.minute, b.method, b.route, b.status,
    b.latency_ms_total / b.requests, NULLIF(b.model, ''),
    b.prompt_tokens / b.requests + CASE WHEN seq.n <= b.prompt_tokens % b.requests THEN 1 ELSE 0 END,
    b.completion_tokens / b.requests + CASE WHEN seq.n <= b.completion_tokens % b.requests THEN 1 ELSE 0 END
FROM api_key_usage_buckets AS b JOIN seq ON seq.n <= b.requests
ORDER BY b.minute, b.key_id, seq.n
"""


def upgrade() -> None:
    op.create_table(
        "api_key_usage_buckets",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("minute", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=300), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_total", sa.Float(), nullable=False),
        sa.Column("latency_ms_max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "key_id",
            "minute",
            "kind",
            "method",
            "route",
            "status",
            "model",
            name=op.f("pk_api_key_usage_buckets"),
        ),
    )
    minute, day = MINUTE_AND_DAY[op.get_bind().dialect.name]
    op.execute(sa.text(ROWS_TO_BUCKETS.format(minute=minute, day=day)))
    with op.batch_alter_table("api_key_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_api_key_usage_key_day")
    op.drop_table("api_key_usage")


def downgrade() -> None:
    op.create_table(
        "api_key_usage",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=300), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_usage")),
    )
    with op.batch_alter_table("api_key_usage", schema=None) as batch_op:
        batch_op.create_index("ix_api_key_usage_key_day", ["key_id", "day"], unique=False)
    op.execute(sa.text(BUCKETS_TO_ROWS))
    op.drop_table("api_key_usage_buckets")
