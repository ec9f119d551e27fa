"""The task table: one row per accepted task, the queue's source of truth (a `kill -9` loses nothing).

Its scheduling columns are the shared job mechanism's (app/jobs/queue.py); the rest is the task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntAuditBase
from advanced_alchemy.types.datetime import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Double, Index, Integer, SmallInteger, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

JsonB = JSON().with_variant(JSONB(), "postgresql")

TASK_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# Claimed lowest first: high, then normal, then low.
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


class Task(BigIntAuditBase):
    __tablename__ = "task"
    __table_args__ = (
        # The claim: due pending tasks by priority, then age.
        Index("ix_task_status_priority_submitted", "status", "priority", "submitted_at"),
        # A caller's own tasks, newest first.
        Index("ix_task_owner_submitted", "owner", "submitted_at"),
        # Pruning finished tasks past their TTL.
        Index("ix_task_status_expires", "status", "expires_at"),
    )

    # Who submitted it: the principal's kind and id (`api_key:abc123`), `anonymous` without auth.
    owner: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    source_language: Mapped[str] = mapped_column(String(16))
    voice: Mapped[str | None] = mapped_column(String(64), default=None)
    # The model name the task was routed to (PYLON_TASKS_ROUTES at submission).
    model: Mapped[str] = mapped_column(String(128))
    input_text: Mapped[str | None] = mapped_column(Text, default=None)
    # Uploaded audio, stored under the data dir; deleted with the task.
    input_path: Mapped[str | None] = mapped_column(Text, default=None)
    input_type: Mapped[str | None] = mapped_column(String(64), default=None)
    input_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    result_text: Mapped[str | None] = mapped_column(Text, default=None)
    result_path: Mapped[str | None] = mapped_column(Text, default=None)
    result_type: Mapped[str | None] = mapped_column(String(64), default=None)
    result_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Who answered: the backend, the miner (subnet backends) and its scores, when known.
    backend: Mapped[str | None] = mapped_column(String(128), default=None)
    miner: Mapped[str | None] = mapped_column(String(128), default=None)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JsonB, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Scheduling in Unix seconds (plain numbers compare the same way on SQLite and PostgreSQL).
    submitted_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float] = mapped_column(Double, default=0.0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[float | None] = mapped_column(Double, default=None)
    # When the current (last) attempt was claimed, and how long the task took from submission.
    attempt_started_at: Mapped[float | None] = mapped_column(Double, default=None)
    duration: Mapped[float | None] = mapped_column(Double, default=None)
    expires_at: Mapped[float | None] = mapped_column(Double, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
