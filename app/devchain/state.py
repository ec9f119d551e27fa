"""The development chain's state: one subnet at one block, and a block with every subnet's snapshot."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from app.chain.client import BlockInfo, Certificate, Neuron, SubnetHyperparams


class Commit(msgspec.Struct, frozen=True, kw_only=True):
    hotkey: str
    commit_block: int
    reveal_round: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int


class SubnetSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One subnet at one block. Frozen: a change makes a new snapshot, older blocks keep theirs."""

    netuid: int
    hyperparams: SubnetHyperparams
    neurons: tuple[Neuron, ...]
    # validator uid -> ((uid, u16 max-upscaled weight), ...)
    weights: Mapping[int, tuple[tuple[int, int], ...]] = msgspec.field(default_factory=dict)
    commits: tuple[Commit, ...] = ()
    certificates: Mapping[str, Certificate] = msgspec.field(default_factory=dict)

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

    @property
    def info(self) -> BlockInfo:
        return BlockInfo(number=self.number, hash=self.hash)


def replace_neuron(snapshot: SubnetSnapshot, uid: int, **changes: object) -> SubnetSnapshot:
    """The snapshot with one neuron's fields changed."""
    neurons = list(snapshot.neurons)
    neurons[uid] = msgspec.structs.replace(neurons[uid], **changes)
    return msgspec.structs.replace(snapshot, neurons=tuple(neurons))
