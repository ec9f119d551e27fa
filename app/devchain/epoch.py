"""The development chain's epochs: when they run, the simulated drand round, and what an epoch changes.

The epoch is a deterministic stand-in for Yuma consensus (scores drift, emission follows the scores), seeded
by the chain's seed, the netuid and the block, so the same chain always scores the same way.
"""

from __future__ import annotations

import random

import msgspec

from app.chain.client import U16_MAX, Stakes
from app.devchain.state import SubnetSnapshot

# Subtensor weighs TAO stake against alpha stake with this factor (its default `TaoWeight` is 0.18).
TAO_WEIGHT = 0.18


def epoch_due(netuid: int, tempo: int, block: int) -> bool:
    # Subtensor's `blocks_until_next_epoch`: the epoch runs when (block + netuid + 1) % (tempo + 1) == 0.
    return tempo > 0 and (block + netuid + 1) % (tempo + 1) == 0


def next_epoch_block(netuid: int, tempo: int, block: int) -> int:
    """The first block after `block` at which the subnet's epoch runs."""
    period = tempo + 1
    return block + 1 + (-(block + 1 + netuid + 1)) % period


def last_epoch_block(netuid: int, tempo: int, block: int) -> int:
    """The last block at or before `block` at which the subnet's epoch ran (0 before the first; `tempo` 0:
    never, so 0)."""
    if tempo <= 0:
        return 0
    return max(0, block - (block + netuid + 1) % (tempo + 1))


def reveal_round(snapshot: SubnetSnapshot, block: int) -> int:
    """The simulated "drand round" of a commit made at `block`: a block number, the first block of the
    epoch `commit_reveal_period` epochs after the commit's."""
    params = snapshot.hyperparams
    reveal = block
    for _ in range(max(1, params.commit_reveal_period)):
        reveal = next_epoch_block(snapshot.netuid, params.tempo, reveal)
    return reveal


def run_epoch(seed: int, snapshot: SubnetSnapshot, block: int) -> SubnetSnapshot:
    """Score the subnet at `block`: incentive, dividends, trust, emission, stake growth, activity."""
    rng = random.Random(f"{seed}:{snapshot.netuid}:{block}")
    params = snapshot.hyperparams
    neurons = []
    blocks_per_epoch = params.tempo + 1
    for neuron in snapshot.neurons:
        validator = neuron.validator_permit
        incentive = 0.0 if validator else min(1.0, rng.betavariate(1.2, 30))
        dividends = min(1.0, rng.betavariate(2, 20)) if validator else 0.0
        trust = 0.0 if validator else rng.uniform(0.6, 1.0)
        consensus = 0.0 if validator else round(incentive * rng.uniform(0.8, 1.2), 6)
        validator_trust = rng.uniform(0.8, 1.0) if validator else 0.0
        emission = (incentive + dividends) * blocks_per_epoch * 0.5
        last_update = neuron.last_update
        if validator and rng.random() < 0.7:
            last_update = max(last_update, block - rng.randint(0, params.tempo // 2))
        alpha = neuron.stakes.alpha + emission * (0.5 if validator else 0.0)
        active = block - last_update <= params.activity_cutoff if validator else neuron.active
        neurons.append(
            msgspec.structs.replace(
                neuron,
                active=active,
                rank=consensus,
                incentive=incentive,
                dividends=dividends,
                trust=trust,
                consensus=consensus,
                validator_trust=validator_trust,
                emission=emission,
                last_update=last_update,
                pruning_score=round((incentive + dividends) * U16_MAX) if neuron.uid % 7 else U16_MAX,
                stake=alpha,
                stakes=Stakes(
                    alpha=alpha, tao=neuron.stakes.tao, total=alpha + neuron.stakes.tao * TAO_WEIGHT
                ),
            )
        )
    return msgspec.structs.replace(snapshot, neurons=tuple(neurons))
