"""The miner records table: one row per (netuid, miner hotkey), summed over every worker and instance."""

from __future__ import annotations

from advanced_alchemy.base import DefaultBase
from sqlalchemy import BigInteger, Double, Integer, String
from sqlalchemy.orm import Mapped, mapped_column


class MinerRecord(DefaultBase):
    """What the gateway learnt about one miner: counts, moving averages, when it last answered.

    Workers add their buffered counts with an upsert and fold their observations into the averages
    (`app/gateway/records.py`), so the row is every worker's and instance's view at once. A hotkey that
    re-registers under a new key is a new row: it starts afresh.
    """

    __tablename__ = "gateway_miner"

    netuid: Mapped[int] = mapped_column(Integer, primary_key=True)
    hotkey: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[int] = mapped_column(Integer, default=-1)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    successes: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    # Exponential moving averages (PYLON_GATEWAY_SCORE_ALPHA); latency over successful answers only.
    score_ema: Mapped[float | None] = mapped_column(Double, default=None)
    latency_ema: Mapped[float | None] = mapped_column(Double, default=None)
    # Unix seconds of the last answer (success or failure).
    last_seen: Mapped[float | None] = mapped_column(Double, default=None)
