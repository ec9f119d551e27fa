"""The development chain's clock: block timestamps and the simulated drand round, both from the block number.

Timestamps are deterministic (`GENESIS_TIME` plus 12 s per block number, whatever the producer's real pace),
so the same chain has the same times, drand rounds and hashes on every run; a fast test chain's blocks are
therefore "12 s apart" in chain time even when they come every 10 ms.
"""

from __future__ import annotations

# 2025-01-01T00:00:00Z: the timestamp block number 0 would have.
GENESIS_TIME_MS = 1_735_689_600_000
# Subtensor's target block time.
BLOCK_MS = 12_000
# drand quicknet (what subtensor's timelocks target): genesis time and period in seconds.
DRAND_GENESIS = 1_692_803_367
DRAND_PERIOD = 3


def timestamp_ms(number: int) -> int:
    """`Timestamp.Now` of the block (milliseconds)."""
    return GENESIS_TIME_MS + number * BLOCK_MS


def drand_round(number: int) -> int:
    """The drand quicknet round current at the block's timestamp (the Drand pallet's `LastStoredRound`)."""
    return max(0, (timestamp_ms(number) // 1000 - DRAND_GENESIS) // DRAND_PERIOD)
