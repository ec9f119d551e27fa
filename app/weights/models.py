"""The apply-weights job table: one row per PUT, the worker's source of truth (a restart loses nothing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntAuditBase
from advanced_alchemy.types.datetime import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Double, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

# pending: waiting for its first attempt or its next retry; running: leased by one worker, on chain now;
# set / committed: landed (committed = commit-reveal, revealed by the chain at `reveal_round`);
# failed: a permanent error or out of attempts; expired: the epoch it was made for ended;
# superseded: a newer PUT for the same identity and netuid replaced it before it landed.
# advanced-alchemy's JsonB breaks under SQLAlchemy 2.1 (util.portable_instancemethod is gone); its equivalent:
JsonB = JSON().with_variant(JSONB(), "postgresql")

JOB_STATUSES = ("pending", "running", "set", "committed", "failed", "expired", "superseded")
FINAL_STATUSES = frozenset({"set", "committed", "failed", "expired", "superseded"})
APPLIED_STATUSES = ("set", "committed")


class WeightsJob(BigIntAuditBase):
    __tablename__ = "weights_job"
    __table_args__ = (
        # The claim and supersede statements look up jobs by identity+netuid and status.
        Index("ix_weights_job_identity_netuid_status", "identity", "netuid", "status"),
        # "Is there a newer job for this identity+netuid?" is asked by every claim and supersede.
        Index("ix_weights_job_identity_netuid_id", "identity", "netuid", "id"),
        Index("ix_weights_job_status_next_attempt", "status", "next_attempt_at"),
    )

    identity: Mapped[str] = mapped_column(String(64))
    netuid: Mapped[int] = mapped_column(Integer)
    # The wallet's hotkey when the job was made (an identity's wallet could be swapped between restarts).
    hotkey: Mapped[str] = mapped_column(String(64))
    weights: Mapped[dict[str, Any]] = mapped_column(JsonB)
    count: Mapped[int] = mapped_column(Integer)
    skipped_hotkeys: Mapped[list[str]] = mapped_column(JsonB, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # "set" or "commit", chosen by the subnet's hyperparameters at the block of the attempt.
    mode: Mapped[str | None] = mapped_column(String(8), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # The epoch the job is for: head block when created, last block of that epoch (retries stop after it).
    created_block: Mapped[int | None] = mapped_column(BigInteger, default=None)
    epoch_end_block: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tempo: Mapped[int | None] = mapped_column(Integer, default=None)
    # Block the extrinsic was included in, its hash, and (commit-reveal) the drand round it reveals at.
    applied_block: Mapped[int | None] = mapped_column(BigInteger, default=None)
    extrinsic_hash: Mapped[str | None] = mapped_column(String(80), default=None)
    reveal_round: Mapped[int | None] = mapped_column(BigInteger, default=None)
    superseded_by: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Scheduling in Unix seconds (plain numbers compare the same way on SQLite and PostgreSQL).
    next_attempt_at: Mapped[float] = mapped_column(Double, default=0.0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[float | None] = mapped_column(Double, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
