"""Storage the node models, as raw key -> SCALE value maps per block (what state_getStorage/getKeys read).

Each modelled item is computed on demand for one block and cached by block hash: a map of the full storage
key to the encoded value, so single reads, prefix listings and `queryStorageAt` all come from the same place.
Keys of items that are not modelled read as absent (`null`), as on a node that never wrote them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.devchain.node.codec import Runtime, StorageItem, account_hex
from app.devchain.node.runtime_api import axon_value
from app.devchain.state import BlockRecord

if TYPE_CHECKING:
    from app.devchain.node.node import LocalNode

# Subtensor keys per-mechanism storage by `mecid * 4096 + netuid`.
GLOBAL_MAX_SUBNET_COUNT = 4096


@dataclass(frozen=True)
class BlockContext:
    """What a storage builder sees: the block's record (state) and the node (events, nonces, time)."""

    record: BlockRecord
    node: LocalNode


Entries = dict[bytes, bytes]


class Storage:
    def __init__(self, runtime: Runtime, node: LocalNode, cache_size: int = 256) -> None:
        self.runtime = runtime
        self.node = node
        self._cache: OrderedDict[tuple[str, bytes], Entries] = OrderedDict()
        self._cache_size = cache_size
        self._builders: dict[bytes, tuple[StorageItem, Callable[[StorageItem, BlockContext], Entries]]] = {}
        for pallet, name, builder in (
            ("SubtensorModule", "Uids", self._uids),
            ("SubtensorModule", "Keys", self._keys),
            ("SubtensorModule", "Axons", self._axons),
            ("SubtensorModule", "NeuronCertificates", self._certificates),
            ("SubtensorModule", "Weights", self._weights),
            ("SubtensorModule", "TimelockedWeightCommits", self._commits),
            ("SubtensorModule", "TotalNetworks", self._total_networks),
            ("SubtensorModule", "StakeThreshold", self._stake_threshold),
            ("SubtensorModule", "CommitRevealWeightsEnabled", self._commit_reveal_enabled),
            ("SubtensorModule", "Tempo", self._tempo),
            ("SubtensorModule", "LastUpdate", self._last_update),
            ("System", "Events", self._events),
            ("System", "Number", self._number),
            ("System", "Account", self._accounts),
            ("SubtensorModule", "AssociatedEvmAddress", self._evm_addresses),
            ("SubtensorModule", "NetworksAdded", self._networks_added),
            ("Commitments", "CommitmentOf", self._commitment_of),
            ("Commitments", "LastCommitment", self._last_commitment),
            ("Commitments", "RevealedCommitments", self._revealed_commitments),
            ("Timestamp", "Now", self._now),
            ("Drand", "LastStoredRound", self._drand_round),
        ):
            item = runtime.storage_item(pallet, name)
            self._builders[item.prefix] = (item, builder)

    # ---------------------------------------------------------------------------------------- reads
    def entries(self, prefix: bytes, ctx: BlockContext) -> tuple[StorageItem, Entries] | None:
        found = self._builders.get(bytes(prefix[:32]))
        if found is None:
            return None
        item, builder = found
        key = (ctx.record.hash, item.prefix)
        cached = self._cache.get(key)
        if cached is None:
            cached = builder(item, ctx)
            self._cache[key] = cached
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return item, cached

    def get(self, key: bytes, ctx: BlockContext) -> bytes | None:
        found = self.entries(key, ctx)
        return None if found is None else found[1].get(bytes(key))

    def keys(self, prefix: bytes, ctx: BlockContext) -> list[bytes]:
        found = self.entries(prefix, ctx) if len(prefix) >= 32 else None
        if found is None:
            return []
        return sorted(k for k in found[1] if k.startswith(prefix))

    # ------------------------------------------------------------------------------------- builders
    def _value(self, item: StorageItem, value: Any) -> bytes:
        return self.runtime.encode(item.value_type, value)

    def _map(self, item: StorageItem, rows: list[tuple[tuple[Any, ...], Any]]) -> Entries:
        return {self.runtime.storage_key(item, *params): self._value(item, value) for params, value in rows}

    def _plain(self, item: StorageItem, value: Any) -> Entries:
        return {item.prefix: self._value(item, value)}

    def _uids(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid, account_hex(n.hotkey)), n.uid)
                for netuid, snap in ctx.record.subnets.items()
                for n in snap.neurons
            ],
        )

    def _keys(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid, n.uid), account_hex(n.hotkey))
                for netuid, snap in ctx.record.subnets.items()
                for n in snap.neurons
            ],
        )

    def _axons(self, item: StorageItem, ctx: BlockContext) -> Entries:
        # The chain stores an axon only once a hotkey has served one.
        return self._map(
            item,
            [
                ((netuid, account_hex(n.hotkey)), axon_value(n.axon_info, block=n.last_update))
                for netuid, snap in ctx.record.subnets.items()
                for n in snap.neurons
                if int(ipaddress.ip_address(n.axon_info.ip)) != 0
            ],
        )

    def _certificates(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                (
                    (netuid, account_hex(hotkey)),
                    {"public_key": "0x" + cert.public_key, "algorithm": cert.algorithm},
                )
                for netuid, snap in ctx.record.subnets.items()
                for hotkey, cert in snap.certificates.items()
            ],
        )

    def _weights(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid, uid), [list(pair) for pair in pairs])
                for netuid, snap in ctx.record.subnets.items()
                for uid, pairs in snap.weights.items()
            ],
        )

    def _commits(self, item: StorageItem, ctx: BlockContext) -> Entries:
        by_epoch: dict[tuple[int, int], list[Any]] = {}
        for netuid, snap in ctx.record.subnets.items():
            period = snap.hyperparams.tempo + 1
            for commit in snap.commits:
                epoch = (commit.commit_block + netuid + 1) // period
                ciphertext, reveal_round = self.node.commit_payload(
                    netuid, commit.hotkey, commit.commit_block
                )
                by_epoch.setdefault((netuid, epoch), []).append(
                    (account_hex(commit.hotkey), commit.commit_block, "0x" + ciphertext.hex(), reveal_round)
                )
        return self._map(item, list(by_epoch.items()))

    def _total_networks(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, len(ctx.record.subnets))

    def _stake_threshold(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, 0)

    def _commit_reveal_enabled(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid,), snap.hyperparams.commit_reveal_weights_enabled)
                for netuid, snap in ctx.record.subnets.items()
            ],
        )

    def _tempo(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item, [((netuid,), snap.hyperparams.tempo) for netuid, snap in ctx.record.subnets.items()]
        )

    def _last_update(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid,), [n.last_update for n in snap.neurons])
                for netuid, snap in ctx.record.subnets.items()
            ],
        )

    def _events(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return {item.prefix: self.node.encoded_events(ctx.record.number)}

    def _number(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, ctx.record.number)

    def _accounts(self, item: StorageItem, ctx: BlockContext) -> Entries:
        # Nonces are the node's current ones (not kept per block): enough for clients that sign.
        return self._map(
            item,
            [
                (
                    (account_hex(account),),
                    {
                        "nonce": nonce,
                        "consumers": 0,
                        "providers": 1,
                        "sufficients": 0,
                        "data": {"free": 0, "reserved": 0, "frozen": 0, "flags": 1 << 127},
                    },
                )
                for account, nonce in self.node.nonces.items()
            ],
        )

    def _now(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, self.node.timestamp_ms(ctx.record.number))

    def _drand_round(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, self.node.drand_round(ctx.record.number))

    def _evm_addresses(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid, uid), (address, proven))
                for netuid, snap in ctx.record.subnets.items()
                for uid, (address, proven) in snap.evm.items()
            ],
        )

    def _networks_added(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(item, [((netuid,), True) for netuid in sorted(self.node.known_netuids(ctx.record))])

    def _commitment_of(self, item: StorageItem, ctx: BlockContext) -> Entries:
        rows: list[tuple[tuple[Any, ...], Any]] = []
        for netuid, snap in ctx.record.subnets.items():
            for hotkey, commitment in snap.commitments.items():
                if commitment.reveal_round is None:
                    field: dict[str, Any] = {f"Raw{len(commitment.data)}": "0x" + commitment.data.hex()}
                else:
                    field = {
                        "TimelockEncrypted": {
                            "encrypted": "0x" + commitment.data.hex(),
                            "reveal_round": commitment.reveal_round,
                        }
                    }
                value = {"deposit": 0, "block": commitment.block, "info": {"fields": [[field]]}}
                rows.append(((netuid, account_hex(hotkey)), value))
        return self._map(item, rows)

    def _last_commitment(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((netuid, account_hex(hotkey)), block)
                for netuid, snap in ctx.record.subnets.items()
                for hotkey, block in snap.last_commitment.items()
            ],
        )

    def _revealed_commitments(self, item: StorageItem, ctx: BlockContext) -> Entries:
        # Subtensor keeps the revealed bytes as bittensor_drand encrypted them: SCALE-encoded (length first).
        return self._map(
            item,
            [
                (
                    (netuid, account_hex(hotkey)),
                    [("0x" + self.runtime.encode("String", r.data).hex(), r.reveal_block) for r in entries],
                )
                for netuid, snap in ctx.record.subnets.items()
                for hotkey, entries in snap.revealed.items()
            ],
        )
