"""The development chain's first state: every neuron's keys, stake and axon, derived from the seed.

The same seed gives the same hotkeys, stakes and axons. Miners' axons sit in the documentation address
ranges (RFC 5737), so a gateway in front of the development chain never calls a real host.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Literal

from app.chain.client import AxonInfo, Stakes, SubnetHyperparams
from app.devchain.epoch import TAO_WEIGHT, run_epoch
from app.devchain.state import NO_AXON, AxonServed, SubnetSnapshot, new_neuron

# RFC 5737's TEST-NET-1, -2 and -3 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24): for documentation only.
DOCUMENTATION_NETWORKS = ("192.0.2", "198.51.100", "203.0.113")
# Genesis neurons per subnet with an associated EVM address.
EVM_ASSOCIATIONS = 3


def keypair_for(seed: int, netuid: int, uid: int, kind: Literal["hot", "cold"] = "hot") -> Any:
    """The deterministic sr25519 keypair of a simulated neuron (tests sign with it, e.g. Epistula)."""
    from bittensor_wallet import Keypair

    secret = hashlib.blake2b(f"pylon-sim:{seed}:{netuid}:{uid}:{kind}".encode(), digest_size=32).hexdigest()
    return Keypair.create_from_seed(secret)  # type: ignore[arg-type]  # the stub says bytes; it takes hex


def genesis_subnet(
    seed: int, netuid: int, count: int, params: SubnetHyperparams, block: int
) -> SubnetSnapshot:
    """A subnet of `count` neurons at `block`: lognormal stakes, the top `max_validators` with a permit,
    scored by one epoch."""
    rng = random.Random(f"{seed}:{netuid}")
    raw_stakes = [rng.lognormvariate(8, 2.2) for _ in range(count)]
    ranked = sorted(range(count), key=lambda uid: raw_stakes[uid], reverse=True)
    permitted = set(ranked[: params.max_validators])
    neurons = []
    for uid in range(count):
        hotkey = keypair_for(seed, netuid, uid).ss58_address
        coldkey = keypair_for(seed, netuid, uid % max(1, count // 3), "cold").ss58_address
        validator = uid in permitted
        alpha = raw_stakes[uid]
        tao = alpha * rng.uniform(0.0, 0.5)
        if validator:
            axon = NO_AXON  # validators rarely serve
        else:
            # Four draws, as when these were random public addresses, so every later draw (ports, stakes,
            # scores) and every seed's chain stays what it was.
            network, _, _, host = (
                rng.randint(11, 223),
                rng.randint(0, 255),
                rng.randint(0, 255),
                rng.randint(1, 254),
            )
            ip = f"{DOCUMENTATION_NETWORKS[network % len(DOCUMENTATION_NETWORKS)]}.{host}"
            axon = AxonInfo(ip=ip, port=rng.choice((8091, 8080, 9000, rng.randint(1024, 65535))), protocol=4)
        neurons.append(
            new_neuron(
                uid,
                hotkey,
                coldkey,
                axon=axon,
                stakes=Stakes(alpha=alpha, tao=tao, total=alpha + tao * TAO_WEIGHT),
                last_update=block - rng.randint(0, params.tempo),
                validator_permit=validator,
            )
        )
    snapshot = SubnetSnapshot(
        netuid=netuid,
        hyperparams=params,
        neurons=tuple(neurons),
        evm=genesis_evm_associations(seed, netuid, count, block),
        axons_served={n.hotkey: AxonServed(block=block) for n in neurons if n.axon_info != NO_AXON},
    )
    return run_epoch(seed, snapshot, block)


def genesis_evm_associations(seed: int, netuid: int, count: int, block: int) -> dict[int, tuple[str, int]]:
    """A few uids with an associated EVM address (a seeded H160) proven some blocks before genesis."""
    # A generator of its own, so the neurons' draws stay what they were.
    rng = random.Random(f"evm:{seed}:{netuid}")
    uids = rng.sample(range(count), k=min(count, EVM_ASSOCIATIONS))
    return {
        uid: (
            "0x"
            + hashlib.blake2b(f"pylon-sim-evm:{seed}:{netuid}:{uid}".encode(), digest_size=20).hexdigest(),
            max(0, block - rng.randint(1, 500)),
        )
        for uid in sorted(uids)
    }
