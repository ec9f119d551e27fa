"""Simulated alpha prices: a smooth, bounded, deterministic walk per subnet, from the seed and the block.

Each subnet's price is two slow sines with seeded phases and periods, kept in [MIN_PRICE, MAX_PRICE] TAO per
alpha, so prices move between blocks, reproduce from the seed, and never leave a realistic range. The root
subnet (netuid 0) is TAO itself: exactly 1 TAO.
"""

from __future__ import annotations

import math
import random

RAO = 1_000_000_000
MIN_PRICE = 0.01
MAX_PRICE = 0.1
ROOT_NETUID = 0


def alpha_price(seed: int, netuid: int, block: int) -> int:
    """The subnet's alpha price at the block, in rao of TAO per alpha."""
    if netuid == ROOT_NETUID:
        return RAO
    rng = random.Random(f"price:{seed}:{netuid}")
    slow, fast = rng.uniform(2_000, 8_000), rng.uniform(150, 600)
    phase_slow, phase_fast = rng.uniform(0, math.tau), rng.uniform(0, math.tau)
    # A mix of two unit sines stays in [-1, 1].
    wave = 0.7 * math.sin(math.tau * block / slow + phase_slow) + 0.3 * math.sin(
        math.tau * block / fast + phase_fast
    )
    middle, half = (MAX_PRICE + MIN_PRICE) / 2, (MAX_PRICE - MIN_PRICE) / 2
    return round((middle + half * wave) * RAO)
