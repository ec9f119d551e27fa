"""The service's arithmetic: which block ends the epoch a job is made for."""

from __future__ import annotations

from app.weights.service import epoch_end


def _blocks_until_next_epoch(netuid: int, tempo: int, block: int) -> int:
    # subtensor's pallets/subtensor/src/coinbase/run_coinbase.rs, verbatim arithmetic.
    return tempo - (block + netuid + 1) % (tempo + 1)


def test_epoch_end_matches_subtensor_schedule() -> None:
    for netuid, tempo in ((1, 10), (3, 360), (7, 99)):
        for block in range(1000, 1400, 7):
            end = epoch_end(block, netuid, tempo)
            # Subtensor runs the epoch at `end` (blocks_until_next_epoch == 0) and at no block before it.
            assert _blocks_until_next_epoch(netuid, tempo, end) == 0
            assert all(_blocks_until_next_epoch(netuid, tempo, b) > 0 for b in range(block, end))
