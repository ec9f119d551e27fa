"""Storage the node models, as raw key -> SCALE value maps per block (what state_getStorage/getKeys read).

Each modelled item is computed on demand for one block and cached by block hash: a map of the full storage
key to the encoded value, so single reads, prefix listings and `queryStorageAt` all come from the same place.

A client decodes an absent key as the item's metadata default, so a default read as if it were state is a
defect. Each storage item of the served metadata is therefore one of three kinds:
- modelled: built here from the simulated state (`SUBNET_VALUES` lists the per-subnet items,
  hyperparameters first; an item the served runtime lacks is skipped), root (netuid 0) at subtensor's
  genesis values (`ROOT_VALUES`);
- empty: features the development chain never uses (`EMPTY_ITEMS`: identities, child keys, proxies,
  multisigs...), where an absent key, hence the default, is the truth;
- refused: everything else (balances among them: the node charges no fees and holds no TAO), read or listed
  with `StorageNotModelled`, a JSON-RPC error naming the item, rather than a default passed off as state.
A key that belongs to no item of the metadata reads as absent.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.chain.client import float_to_u16
from app.devchain.node.codec import Runtime, StorageItem, account_hex
from app.devchain.node.runtime_api import rao, served_axon_value
from app.devchain.state import BlockRecord, SubnetSnapshot

if TYPE_CHECKING:
    from app.devchain.node.node import LocalNode


class StorageNotModelled(Exception):
    """A read of a storage item the node has no state for (the message names it and says why)."""

    def __init__(self, pallet: str, name: str) -> None:
        self.pallet = pallet
        self.name = name
        why = (
            "balances are not modelled (the node charges no fees and holds no TAO)"
            if (pallet, name) in {("System", "Account"), ("Balances", "Account")}
            else "the simulated chain has no state for it, and its default would not be the truth"
        )
        super().__init__(f"pylon localnet does not model the storage item {pallet}.{name}: {why}")


# Items the development chain never writes (no identities, children, proxies, multisigs, crowdloans, swaps
# scheduled...): an absent key is their true value. Items the served runtime lacks are ignored.
EMPTY_ITEMS: frozenset[tuple[str, str]] = frozenset(
    {
        ("SubtensorModule", "SubnetIdentitiesV3"),
        ("SubtensorModule", "SubnetIdentitiesV2"),
        ("SubtensorModule", "SubnetIdentities"),
        ("SubtensorModule", "IdentitiesV2"),
        ("SubtensorModule", "Identities"),
        ("SubtensorModule", "ChildKeys"),
        ("SubtensorModule", "ParentKeys"),
        ("SubtensorModule", "PendingChildKeys"),
        ("SubtensorModule", "ChildkeyTake"),
        ("SubtensorModule", "ColdkeySwapScheduled"),
        ("SubtensorModule", "NeuronCertificates"),
        ("Proxy", "Proxies"),
        ("Proxy", "Announcements"),
        ("Multisig", "Multisigs"),
        ("Registry", "IdentityOf"),
        ("Crowdloan", "Crowdloans"),
        ("Scheduler", "Agenda"),
        ("Preimage", "RequestStatusFor"),
    }
)

# Subtensor's genesis state of the root network (netuid 0): set once, no neuron registered on it here.
ROOT_VALUES: dict[str, Any] = {
    "SubnetworkN": 0,
    "MaxAllowedUids": 64,
    "MaxAllowedValidators": 64,
    "MinAllowedWeights": 0,
    "Tempo": 100,
    "NetworkRegistrationAllowed": True,
    "TargetRegistrationsPerInterval": 1,
}

# Subtensor's default token symbols by netuid (its `SYMBOLS` table, Greek part: root's upper-case tau, then
# alpha...omega with "t" at 19). Subnets past it get no `TokenSymbol` entry here (not modelled).
TOKEN_SYMBOLS: tuple[str, ...] = (
    "\u03a4",
    *"αβγδεζηθικλμνξοπρσ",
    "t",
    *"υφχψω",
)


def token_symbol(netuid: int) -> str | None:
    return TOKEN_SYMBOLS[netuid] if 0 <= netuid < len(TOKEN_SYMBOLS) else None


# Subtensor keys per-mechanism storage by `mecid * 4096 + netuid`.
GLOBAL_MAX_SUBNET_COUNT = 4096


# Hyperparameter storage items (keyed by netuid) and the `SubnetHyperparams` field each holds.
HYPERPARAM_STORAGE = {
    "Rho": "rho",
    "Kappa": "kappa",
    "ImmunityPeriod": "immunity_period",
    "MinAllowedWeights": "min_allowed_weights",
    "MaxWeightsLimit": "max_weights_limit",
    "Tempo": "tempo",
    "MinDifficulty": "min_difficulty",
    "MaxDifficulty": "max_difficulty",
    "WeightsVersionKey": "weights_version",
    "WeightsSetRateLimit": "weights_rate_limit",
    "AdjustmentInterval": "adjustment_interval",
    "ActivityCutoff": "activity_cutoff",
    "NetworkRegistrationAllowed": "registration_allowed",
    "TargetRegistrationsPerInterval": "target_regs_per_interval",
    "MinBurn": "min_burn",
    "MaxBurn": "max_burn",
    "BondsMovingAverage": "bonds_moving_avg",
    "MaxRegistrationsPerBlock": "max_regs_per_block",
    "ServingRateLimit": "serving_rate_limit",
    "MaxAllowedValidators": "max_validators",
    "AdjustmentAlpha": "adjustment_alpha",
    "Difficulty": "difficulty",
    "RevealPeriodEpochs": "commit_reveal_period",
    "CommitRevealWeightsEnabled": "commit_reveal_weights_enabled",
    "LiquidAlphaOn": "liquid_alpha_enabled",
}


def _hyperparam(field: str) -> Callable[[SubnetSnapshot], Any]:
    return lambda snap: getattr(snap.hyperparams, field)


def _column(field: str) -> Callable[[SubnetSnapshot], Any]:
    # Subtensor keeps [0, 1] scores as u16 columns indexed by uid.
    return lambda snap: [float_to_u16(getattr(n, field)) for n in snap.neurons]


# Every `SubtensorModule` item keyed by netuid alone, as a function of the subnet's snapshot.
SUBNET_VALUES: dict[str, Callable[[SubnetSnapshot], Any]] = {
    **{name: _hyperparam(field) for name, field in HYPERPARAM_STORAGE.items()},
    "AlphaValues": lambda snap: (snap.hyperparams.alpha_low, snap.hyperparams.alpha_high),
    "SubnetworkN": lambda snap: len(snap.neurons),
    # The simulated subnet is always full: registration replaces a neuron, it never adds a uid.
    "MaxAllowedUids": lambda snap: len(snap.neurons),
    # Registration cost never moves here (no burned registrations adjust it): it sits at its floor.
    "Burn": lambda snap: snap.hyperparams.min_burn,
    "Active": lambda snap: [n.active for n in snap.neurons],
    "ValidatorPermit": lambda snap: [n.validator_permit for n in snap.neurons],
    "Rank": _column("rank"),
    "Trust": _column("trust"),
    "Consensus": _column("consensus"),
    "Incentive": _column("incentive"),
    "Dividends": _column("dividends"),
    "ValidatorTrust": _column("validator_trust"),
    "PruningScores": lambda snap: [min(n.pruning_score, 65535) for n in snap.neurons],
    "Emission": lambda snap: [rao(n.emission) for n in snap.neurons],
}


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
            ("SubtensorModule", "LastUpdate", self._last_update),
            ("SubtensorModule", "IsNetworkMember", self._is_network_member),
            ("SubtensorModule", "Owner", self._owner),
            ("SubtensorModule", "OwnedHotkeys", self._owned_hotkeys),
            ("System", "Events", self._events),
            ("System", "Number", self._number),
            ("SubtensorModule", "AssociatedEvmAddress", self._evm_addresses),
            ("SubtensorModule", "NetworksAdded", self._networks_added),
            ("Commitments", "CommitmentOf", self._commitment_of),
            ("Commitments", "LastCommitment", self._last_commitment),
            ("Commitments", "RevealedCommitments", self._revealed_commitments),
            ("Timestamp", "Now", self._now),
            ("Drand", "LastStoredRound", self._drand_round),
            ("SubtensorModule", "TokenSymbol", self._token_symbols),
        ):
            self._add(pallet, name, builder)
        for name, value in SUBNET_VALUES.items():
            if runtime.has_storage("SubtensorModule", name):
                self._add("SubtensorModule", name, self._per_subnet(value, name))
        for name in ROOT_VALUES.keys() - SUBNET_VALUES.keys():
            if runtime.has_storage("SubtensorModule", name):
                self._add("SubtensorModule", name, self._per_subnet(None, name))
        self._empty = {
            runtime.storage_item(pallet, name).prefix
            for pallet, name in EMPTY_ITEMS
            if runtime.has_storage(pallet, name)
        } - self._builders.keys()

    def _add(self, pallet: str, name: str, builder: Callable[[StorageItem, BlockContext], Entries]) -> None:
        item = self.runtime.storage_item(pallet, name)
        self._builders[item.prefix] = (item, builder)

    def modelled(self) -> list[StorageItem]:
        """The storage items this node builds from state (every other key reads as absent)."""
        return [item for item, _ in self._builders.values()]

    def clear(self) -> None:
        """Forget every built block: for a change made to the head in place (a registration)."""
        self._cache.clear()

    # ---------------------------------------------------------------------------------------- reads
    def entries(self, prefix: bytes, ctx: BlockContext) -> tuple[StorageItem, Entries] | None:
        """The item's entries at the block; None for an empty item or a key of no item; raises
        `StorageNotModelled` for any other item of the metadata."""
        head = bytes(prefix[:32])
        found = self._builders.get(head)
        if found is None:
            named = self.runtime.storage_names.get(head)
            if named is not None and head not in self._empty:
                raise StorageNotModelled(*named)
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
                ((netuid, account_hex(n.hotkey)), served_axon_value(snap, n))
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
        # Root counts, as on subtensor (its genesis adds it).
        return self._plain(item, len(self.node.known_netuids(ctx.record)))

    def _stake_threshold(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._plain(item, 0)

    def _per_subnet(
        self, value: Callable[[SubnetSnapshot], Any] | None, name: str
    ) -> Callable[[StorageItem, BlockContext], Entries]:
        def build(item: StorageItem, ctx: BlockContext) -> Entries:
            rows: list[tuple[tuple[Any, ...], Any]] = []
            if name in ROOT_VALUES:
                rows.append(((0,), ROOT_VALUES[name]))
            if value is not None:
                rows += [((netuid,), value(snap)) for netuid, snap in ctx.record.subnets.items()]
            return self._map(item, rows)

        return build

    def _token_symbols(self, item: StorageItem, ctx: BlockContext) -> Entries:
        # Subtensor stores each subnet's symbol (bytes) at registration, root's at genesis.
        rows: list[tuple[tuple[Any, ...], Any]] = []
        for netuid in sorted(self.node.known_netuids(ctx.record)):
            symbol = token_symbol(netuid)
            if symbol is not None:
                rows.append(((netuid,), "0x" + symbol.encode().hex()))
        return self._map(item, rows)

    def _is_network_member(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [
                ((account_hex(n.hotkey), netuid), True)
                for netuid, snap in ctx.record.subnets.items()
                for n in snap.neurons
            ],
        )

    def _owners(self, ctx: BlockContext) -> dict[str, str]:
        # hotkey -> coldkey; a hotkey has one owner chain-wide, so the lowest netuid's neuron answers.
        owners: dict[str, str] = {}
        for _, snap in sorted(ctx.record.subnets.items()):
            for n in snap.neurons:
                owners.setdefault(n.hotkey, n.coldkey)
        return owners

    def _owner(self, item: StorageItem, ctx: BlockContext) -> Entries:
        return self._map(
            item,
            [((account_hex(hotkey),), account_hex(coldkey)) for hotkey, coldkey in self._owners(ctx).items()],
        )

    def _owned_hotkeys(self, item: StorageItem, ctx: BlockContext) -> Entries:
        owned: dict[str, list[str]] = {}
        for hotkey, coldkey in self._owners(ctx).items():
            owned.setdefault(coldkey, []).append(hotkey)
        return self._map(
            item,
            [
                ((account_hex(coldkey),), [account_hex(h) for h in sorted(hotkeys)])
                for coldkey, hotkeys in owned.items()
            ],
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
