"""The development chain's state: one subnet at one block, and a block with every subnet's snapshot."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from app.chain.client import (
    U16_MAX,
    AxonInfo,
    BlockExtrinsic,
    BlockInfo,
    Certificate,
    Commitment,
    Neuron,
    RevealedCommitment,
    Stakes,
    SubnetHyperparams,
)

# What a neuron that serves nothing advertises.
NO_AXON = AxonInfo(ip="0.0.0.0", port=0, protocol=0)  # noqa: S104


class Commit(msgspec.Struct, frozen=True, kw_only=True):
    hotkey: str
    commit_block: int
    reveal_round: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int


class AxonServed(msgspec.Struct, frozen=True, kw_only=True):
    """What the chain's `Axons` keeps beside the address: the block of the last `serve_axon` and the version
    it sent."""

    block: int
    version: int = 0


class SubnetSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One subnet at one block. Frozen: a change makes a new snapshot, older blocks keep theirs."""

    netuid: int
    hyperparams: SubnetHyperparams
    neurons: tuple[Neuron, ...]
    # validator uid -> ((uid, u16 max-upscaled weight), ...)
    weights: Mapping[int, tuple[tuple[int, int], ...]] = msgspec.field(default_factory=dict)
    commits: tuple[Commit, ...] = ()
    certificates: Mapping[str, Certificate] = msgspec.field(default_factory=dict)
    # The Commitments pallet by hotkey: `CommitmentOf`, `LastCommitment` (block), `RevealedCommitments`.
    commitments: Mapping[str, Commitment] = msgspec.field(default_factory=dict)
    last_commitment: Mapping[str, int] = msgspec.field(default_factory=dict)
    revealed: Mapping[str, tuple[RevealedCommitment, ...]] = msgspec.field(default_factory=dict)
    # Plaintexts of timelocked commitments awaiting reveal: the simulation's stand-in for drand decryption.
    sealed: Mapping[str, str] = msgspec.field(default_factory=dict)
    # `AssociatedEvmAddress`: uid -> (0x-prefixed 20-byte address, last block ownership was proven).
    evm: Mapping[int, tuple[str, int]] = msgspec.field(default_factory=dict)
    # hotkey -> when its axon was served and with which version (genesis axons: the genesis block, 0).
    axons_served: Mapping[str, AxonServed] = msgspec.field(default_factory=dict)

    def uid_of(self, hotkey: str) -> int | None:
        for neuron in self.neurons:
            if neuron.hotkey == hotkey:
                return neuron.uid
        return None


class BlockRecord(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    hash: str
    parent_hash: str
    subnets: Mapping[int, SubnetSnapshot]
    extrinsics: tuple[str, ...] = ()
    # The block's extrinsics decoded: the `Timestamp.set` inherent, then each included signed extrinsic.
    body: tuple[BlockExtrinsic, ...] = ()

    @property
    def info(self) -> BlockInfo:
        return BlockInfo(number=self.number, hash=self.hash)


def replace_neuron(snapshot: SubnetSnapshot, uid: int, **changes: object) -> SubnetSnapshot:
    """The snapshot with one neuron's fields changed."""
    neurons = list(snapshot.neurons)
    neurons[uid] = msgspec.structs.replace(neurons[uid], **changes)
    return msgspec.structs.replace(snapshot, neurons=tuple(neurons))


def new_neuron(
    uid: int,
    hotkey: str,
    coldkey: str,
    *,
    axon: AxonInfo = NO_AXON,
    stakes: Stakes,
    last_update: int,
    validator_permit: bool,
) -> Neuron:
    """A neuron as genesis or registration leaves it: active, unscored until an epoch runs."""
    return Neuron(
        uid=uid,
        coldkey=coldkey,
        hotkey=hotkey,
        active=True,
        axon_info=axon,
        stake=stakes.alpha,
        rank=0.0,
        emission=0.0,
        incentive=0.0,
        consensus=0.0,
        trust=0.0,
        validator_trust=0.0,
        dividends=0.0,
        last_update=last_update,
        validator_permit=validator_permit,
        pruning_score=U16_MAX,
        stakes=stakes,
    )
