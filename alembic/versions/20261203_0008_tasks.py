"""tasks: the long-job table (transcription, speech, summaries) on the shared job mechanism.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("owner", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("source_language", sa.String(length=16), nullable=False),
        sa.Column("voice", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("input_text", sa.Text(), nullable=True),
        sa.Column("input_path", sa.Text(), nullable=True),
        sa.Column("input_type", sa.String(length=64), nullable=True),
        sa.Column("input_size", sa.BigInteger(), nullable=True),
        sa.Column("result_text", sa.Text(), nullable=True),
        sa.Column("result_path", sa.Text(), nullable=True),
        sa.Column("result_type", sa.String(length=64), nullable=True),
        sa.Column("result_size", sa.BigInteger(), nullable=True),
        sa.Column("backend", sa.String(length=128), nullable=True),
        sa.Column("miner", sa.String(length=128), nullable=True),
        sa.Column("scores", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("submitted_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("attempt_started_at", sa.Double(), nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
    )
    op.create_index("ix_task_status_priority_submitted", "task", ["status", "priority", "submitted_at"])
    op.create_index("ix_task_owner_submitted", "task", ["owner", "submitted_at"])
    op.create_index("ix_task_status_expires", "task", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_task_status_expires", table_name="task")
    op.drop_index("ix_task_owner_submitted", table_name="task")
    op.drop_index("ix_task_status_priority_submitted", table_name="task")
    op.drop_table("task")
