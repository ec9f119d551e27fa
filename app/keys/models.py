"""Tables of the keys feature: keys, their change feed, shared rate counters and usage buckets."""

from __future__ import annotations

import datetime as dt

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Date, Float, Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

# Lists are plain JSON: advanced-alchemy's JsonB breaks on SQLAlchemy 2.1 (no util.portable_instancemethod).

# SQLite only autoincrements an `INTEGER PRIMARY KEY`; PostgreSQL gets a 64-bit identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class ApiKey(DefaultBase):
    """One API key. The secret itself is never stored: only its SHA-256."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    identity: Mapped[str | None] = mapped_column(String(200), default=None)
    netuids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    models: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class KeyChange(DefaultBase):
    """Append-only feed: every process polls it and drops the named key from its cache."""

    __tablename__ = "api_key_changes"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class RateWindow(DefaultBase):
    """Requests and tokens per key per rate window, summed over every worker and instance."""

    __tablename__ = "api_key_rate_windows"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Start of the window as a Unix time divided by the window length.
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_api_key_rate_windows_window", "window"),)


class UsageBucket(DefaultBase):
    """Requests by one key (or Epistula signer) in one UTC minute, per method, route, status and model.

    Every worker and instance adds its counts to the same row (an upsert), so a row is the sum of all of them.
    """

    __tablename__ = "api_key_usage_buckets"

    # A key id, or an ss58 hotkey for Epistula callers (`kind` says which).
    key_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # Start of the minute (UTC).
    minute: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    # The minute's UTC day: reports group by it with the same SQL on SQLite and PostgreSQL.
    day: Mapped[dt.date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(300))
    status: Mapped[int] = mapped_column(Integer)
    # '' when no model was reported: NULLs never conflict, so a NULL would defeat the unique key.
    model: Mapped[str] = mapped_column(String(200), default="")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_total: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms_max: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        # The grouping columns are the key (the upsert's conflict target); key_id and minute lead, so the same
        # index serves "usage of key K since day D". No surrogate id: one index to maintain, not two.
        PrimaryKeyConstraint("key_id", "minute", "kind", "method", "route", "status", "model"),
    )
