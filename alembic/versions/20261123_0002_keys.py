"""keys: API keys, their change feed, shared rate-limit counters and usage rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite autoincrements only an `INTEGER PRIMARY KEY`.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("identity", sa.String(length=200), nullable=True),
        sa.Column("netuids", sa.JSON(), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("expires_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("last_used_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("revoked_at", DateTimeUTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "api_key_changes",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("changed_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_changes")),
    )
    with op.batch_alter_table("api_key_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_changes_changed_at"), ["changed_at"], unique=False)

    op.create_table(
        "api_key_rate_windows",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "window", name=op.f("pk_api_key_rate_windows")),
    )
    with op.batch_alter_table("api_key_rate_windows", schema=None) as batch_op:
        batch_op.create_index("ix_api_key_rate_windows_window", ["window"], unique=False)

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


def downgrade() -> None:
    with op.batch_alter_table("api_key_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_api_key_usage_key_day")
    op.drop_table("api_key_usage")
    with op.batch_alter_table("api_key_rate_windows", schema=None) as batch_op:
        batch_op.drop_index("ix_api_key_rate_windows_window")
    op.drop_table("api_key_rate_windows")
    with op.batch_alter_table("api_key_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_changes_changed_at"))
    op.drop_table("api_key_changes")
    op.drop_table("api_keys")
