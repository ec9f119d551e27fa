"""Which miners a request goes to: eligible miners from the metagraph, ranked by running score.

Eligible: a served axon (port and an IP, not 0.0.0.0) at an allowed address, not this validator's own
hotkey, and (with `require_no_permit`) no validator permit. The metagraph is the latest block's, so a
deregistered miner drops out at the next block.

Ranking: a miner with fewer than `WARMUP` answers ranks above every scored one (new miners get tried;
the first fan-outs spread over them), the rest by score, best first. With probability `exploration` the
fan-out's last slot goes to a random miner outside the top instead of the next best, so a miner that
had a bad start (or improved) is heard again.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import msgspec

from app.chain.client import Neuron
from app.gateway.networks import AllowedNetworks
from app.gateway.records import MinerRecords

# Answers a miner gives before its score decides its rank.
WARMUP = 3


class Miner(msgspec.Struct, frozen=True, kw_only=True):
    """A miner's address as the metagraph says."""

    hotkey: str
    uid: int
    ip: str
    port: int


def eligible_miners(
    neurons: Iterable[Neuron],
    allowed: AllowedNetworks,
    *,
    own_hotkey: str | None,
    require_no_permit: bool,
) -> list[Miner]:
    miners = []
    for neuron in neurons:
        axon = neuron.axon_info
        if not axon.port or neuron.hotkey == own_hotkey:
            continue
        if require_no_permit and neuron.validator_permit:
            continue
        if not allowed.allows(axon.ip):
            continue
        miners.append(Miner(hotkey=neuron.hotkey, uid=neuron.uid, ip=axon.ip, port=axon.port))
    return miners


def rank(netuid: int, miners: list[Miner], records: MinerRecords, rng: random.Random) -> list[Miner]:
    """Every miner, best first (new ones ahead; ties broken at random so equal miners share traffic)."""

    def key(miner: Miner) -> tuple[int, float, float]:
        stats = records.peek(netuid, miner.hotkey)
        if stats is None or stats.total_requests < WARMUP:
            # Among new miners, the least tried first.
            return (0, float(stats.total_requests if stats else 0), rng.random())
        score = stats.score.value
        return (1, -(score if score is not None else 0.0), rng.random())

    return sorted(miners, key=key)


def choose(
    netuid: int,
    miners: list[Miner],
    records: MinerRecords,
    count: int,
    *,
    exploration: float,
    rng: random.Random,
) -> list[Miner]:
    """`count` miners for one request, best first; the last slot explores with probability `exploration`."""
    ranked = rank(netuid, miners, records, rng)
    chosen = ranked[:count]
    rest = ranked[count:]
    if rest and chosen and rng.random() < exploration:
        chosen[-1] = rng.choice(rest)
    return chosen
