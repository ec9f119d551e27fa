"""weights: the apply-weights job table.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "weights_job",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("netuid", sa.Integer(), nullable=False),
        sa.Column("hotkey", sa.String(length=64), nullable=False),
        sa.Column("weights", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("skipped_hotkeys", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_block", sa.BigInteger(), nullable=True),
        sa.Column("epoch_end_block", sa.BigInteger(), nullable=True),
        sa.Column("tempo", sa.Integer(), nullable=True),
        sa.Column("applied_block", sa.BigInteger(), nullable=True),
        sa.Column("extrinsic_hash", sa.String(length=80), nullable=True),
        sa.Column("reveal_round", sa.BigInteger(), nullable=True),
        sa.Column("superseded_by", sa.BigInteger(), nullable=True),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weights_job")),
    )
    op.create_index("ix_weights_job_identity_netuid_status", "weights_job", ["identity", "netuid", "status"])
    op.create_index("ix_weights_job_identity_netuid_id", "weights_job", ["identity", "netuid", "id"])
    op.create_index("ix_weights_job_status_next_attempt", "weights_job", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_weights_job_status_next_attempt", table_name="weights_job")
    op.drop_index("ix_weights_job_identity_netuid_id", table_name="weights_job")
    op.drop_index("ix_weights_job_identity_netuid_status", table_name="weights_job")
    op.drop_table("weights_job")
