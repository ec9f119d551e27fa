"""The development chain: a deterministic simulated subnet, the chain behind `PYLON_NETWORK=local`.

`SimulatedChain` is a pure state machine: no asyncio, no HTTP, no clock. Blocks advance when
`produce_block()` is called; extrinsics are queued with `submit()` and applied, in order, when the next
block is produced, with subtensor's rules and error names (`rules.py`). Every block keeps a snapshot of the
subnets (copy-on-write, so an unchanged subnet costs nothing), so reads at older blocks see that block's
state until it falls out of `state_history` blocks (then `StatePruned`, as a pruning node would answer).
`app.devchain.client` is the `ChainClient` over it; `app.devchain.node` serves it as a subtensor node.

Every block records its extrinsics decoded (`body.py`): the `Timestamp.set` inherent at index 0, then each
included signed extrinsic, failed ones too (as substrate includes them). Block times, the simulated drand
round (`clock.py`) and alpha prices (`market.py`) are functions of the block number, so they
reproduce as well.

Everything derives from `seed`: the same seed gives the same hotkeys, stakes, axons, block hashes and times.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import msgspec

from app.chain.client import (
    BlockExtrinsic,
    BlockInfo,
    BlockNotFound,
    Commitment,
    EvmAssociation,
    ExtrinsicResult,
    RevealedCommitment,
    Stakes,
    StatePruned,
    SubnetHyperparams,
    SubnetState,
    UnknownNetuid,
)
from app.devchain import body, clock, commitments, market, rules
from app.devchain.calls import Call, ChainModuleError, CommitWeights, Extrinsic, SetCommitment, digest
from app.devchain.epoch import epoch_due, reveal_round, run_epoch
from app.devchain.genesis import genesis_subnet
from app.devchain.state import BlockRecord, SubnetSnapshot, new_neuron, replace_neuron

# Receipts kept for extrinsics, oldest dropped first.
RECEIPTS_KEPT = 10_000


class SimulatedChain:
    """The simulated subnet's state machine. Not thread-safe; call from one thread (the event loop)."""

    def __init__(
        self,
        *,
        netuids: Iterable[int] = (1,),
        neurons: int = 256,
        seed: int = 0,
        start_block: int = 1000,
        hyperparams: SubnetHyperparams | None = None,
        validators: Iterable[str] = (),
        state_history: int = 4096,
        commitment_rate_limit: int = rules.COMMITMENT_RATE_LIMIT,
    ) -> None:
        self.seed = seed
        self.state_history = state_history
        # The Commitments pallet's `RateLimit` (a chain-wide value, not a subnet hyperparameter).
        self.commitment_rate_limit = commitment_rate_limit
        self._nonce = 0
        self.pending: list[Extrinsic] = []
        self.receipts: dict[str, ExtrinsicResult] = {}
        self._receipt_order: list[str] = []
        self._blocks: OrderedDict[int, BlockRecord] = OrderedDict()
        self._hashes: dict[str, int] = {}
        self.genesis_number = start_block
        params = hyperparams or SubnetHyperparams()
        subnets = {netuid: genesis_subnet(seed, netuid, neurons, params, start_block) for netuid in netuids}
        genesis = BlockRecord(
            number=start_block,
            hash=digest("block", seed, start_block),
            parent_hash=digest("block", seed, start_block - 1),
            subnets=subnets,
            body=(body.timestamp_inherent(seed, start_block, clock.timestamp_ms(start_block)),),
        )
        self._append(genesis)
        for hotkey in validators:
            for netuid in subnets:
                self.register(netuid, hotkey, validator=True)

    # -------------------------------------------------------------------------------------- blocks
    def _append(self, record: BlockRecord) -> None:
        self._blocks[record.number] = record
        self._hashes[record.hash] = record.number
        while len(self._blocks) > self.state_history:
            _, old = self._blocks.popitem(last=False)
            # The hash stays known (a pruning node keeps headers); the state is gone.
            del old

    @property
    def head(self) -> BlockRecord:
        return next(reversed(self._blocks.values()))

    @property
    def netuids(self) -> list[int]:
        return sorted(self.head.subnets)

    def block(self, number: int) -> BlockRecord:
        record = self._blocks.get(number)
        if record is not None:
            return record
        if number > self.head.number:
            raise BlockNotFound(number, "is in the future")
        if number >= self.genesis_number:
            raise StatePruned(number)
        raise BlockNotFound(number, "is before the simulated chain's first block")

    def block_by_hash(self, block_hash: str) -> BlockRecord:
        number = self._hashes.get(block_hash)
        if number is None:
            raise BlockNotFound(None, f"with hash {block_hash} not found")
        return self.block(number)

    def at(self, block: BlockInfo | int | None = None) -> BlockRecord:
        if block is None:
            return self.head
        if isinstance(block, int):
            return self.block(block)
        record = self.block(block.number)
        if record.hash != block.hash:
            raise BlockNotFound(block.number, f"with hash {block.hash} not found")
        return record

    def subnet(self, netuid: int, block: BlockInfo | int | None = None) -> SubnetSnapshot:
        snapshot = self.at(block).subnets.get(netuid)
        if snapshot is None:
            raise UnknownNetuid(netuid)
        return snapshot

    def produce_block(self) -> BlockRecord:
        """Make the next block: apply queued extrinsics in order, reveal due commits, run due epochs."""
        parent = self.head
        number = parent.number + 1
        subnets = dict(parent.subnets)
        included = []
        decoded = [body.timestamp_inherent(self.seed, number, clock.timestamp_ms(number))]
        block_hash = digest("block", self.seed, number)
        for extrinsic in self.pending:
            included.append(extrinsic.hash)
            error: str | None = None
            try:
                rules.apply(subnets, extrinsic, number, commitment_rate_limit=self.commitment_rate_limit)
            except ChainModuleError as exc:
                error = exc.name
            result = ExtrinsicResult(
                block=BlockInfo(number=number, hash=block_hash),
                extrinsic_hash=extrinsic.hash,
                success=error is None,
                error_name=error,
                reveal_round=self._reveal_round(subnets, extrinsic.call, number),
            )
            self._record_receipt(result)
            decoded.append(body.signed(extrinsic, number, len(decoded), result))
        self.pending = []
        drand_round = clock.drand_round(number)
        for netuid, snapshot in list(subnets.items()):
            snapshot = rules.reveal_due(snapshot, number)
            snapshot = commitments.reveal_due(snapshot, number, drand_round)
            if epoch_due(netuid, snapshot.hyperparams.tempo, number):
                snapshot = run_epoch(self.seed, snapshot, number)
            subnets[netuid] = snapshot
        record = BlockRecord(
            number=number,
            hash=block_hash,
            parent_hash=parent.hash,
            subnets=subnets,
            extrinsics=tuple(included),
            body=tuple(decoded),
        )
        self._append(record)
        return record

    @staticmethod
    def _reveal_round(subnets: dict[int, SubnetSnapshot], call: Call, number: int) -> int | None:
        if isinstance(call, CommitWeights) and call.netuid in subnets:
            return reveal_round(subnets[call.netuid], number)
        if isinstance(call, SetCommitment):
            return call.reveal_round
        return None

    def _record_receipt(self, result: ExtrinsicResult) -> None:
        self.receipts[result.extrinsic_hash] = result
        self._receipt_order.append(result.extrinsic_hash)
        if len(self._receipt_order) > RECEIPTS_KEPT:
            self.receipts.pop(self._receipt_order.pop(0), None)

    # ---------------------------------------------------------------------------------- extrinsics
    def timelock_round(self, blocks_until_reveal: int) -> int:
        """The drand round a timelock made now should target to open about `blocks_until_reveal` blocks
        ahead (what bittensor_drand computes from the clock)."""
        return clock.drand_round(self.head.number + max(0, blocks_until_reveal))

    def submit(self, signer: str, call: Call) -> str:
        """Queue an extrinsic for the next block; returns its hash (look for it in `receipts`)."""
        self._nonce += 1
        extrinsic_hash = digest("xt", self.seed, signer, self._nonce, self.head.number)
        self.pending.append(
            Extrinsic(signer=signer, call=call, hash=extrinsic_hash, submitted_at=self.head.number)
        )
        return extrinsic_hash

    # ------------------------------------------------------------------------------- direct changes
    def _update_head(self, netuid: int, snapshot: SubnetSnapshot) -> None:
        # Genesis-time and operator changes (register, permits, hyperparams) rewrite the head's snapshot:
        # they model sudo/registration calls without making the caller wait for a block.
        head = self.head
        subnets = dict(head.subnets)
        subnets[netuid] = snapshot
        self._blocks[head.number] = msgspec.structs.replace(head, subnets=subnets)

    def register(
        self,
        netuid: int,
        hotkey: str,
        coldkey: str | None = None,
        *,
        validator: bool = False,
        stake: float | None = None,
    ) -> int:
        """Register a hotkey in place of the lowest-staked non-validator; return its uid.

        With `validator=True` the neuron gets a validator permit and a validator-sized stake.
        Registering an already registered hotkey only applies `validator`/`stake`.
        """
        snapshot = self.subnet(netuid)
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            candidates = [n for n in snapshot.neurons if not n.validator_permit] or list(snapshot.neurons)
            uid = min(candidates, key=lambda n: (n.stakes.total, -n.uid)).uid
            neuron = new_neuron(
                uid,
                hotkey,
                coldkey or hotkey,
                stakes=Stakes(alpha=0.0, tao=0.0, total=0.0),
                # Zero so that a fresh registrant may set weights at once.
                last_update=0,
                validator_permit=False,
            )
            neurons = list(snapshot.neurons)
            neurons[uid] = neuron
            weights = {k: v for k, v in snapshot.weights.items() if k != uid}
            certificates = {
                k: v for k, v in snapshot.certificates.items() if k != snapshot.neurons[uid].hotkey
            }
            # The replaced uid's EVM association goes with it, as subtensor clears it on replacement.
            evm = {k: v for k, v in snapshot.evm.items() if k != uid}
            served = {k: v for k, v in snapshot.axons_served.items() if k != snapshot.neurons[uid].hotkey}
            snapshot = msgspec.structs.replace(
                snapshot,
                neurons=tuple(neurons),
                weights=weights,
                certificates=certificates,
                evm=evm,
                axons_served=served,
            )
        if stake is None and validator:
            stake = max(max(n.stakes.alpha for n in snapshot.neurons), 100_000.0)
        changes: dict[str, Any] = {}
        if stake is not None:
            changes["stake"] = stake
            changes["stakes"] = Stakes(alpha=stake, tao=0.0, total=stake)
        if validator:
            changes["validator_permit"] = True
        if changes:
            snapshot = replace_neuron(snapshot, uid, **changes)
        self._update_head(netuid, snapshot)
        return uid

    def set_validator_permit(self, netuid: int, hotkey: str, permit: bool = True) -> None:
        snapshot = self.subnet(netuid)
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            raise ChainModuleError("HotKeyNotRegisteredInSubNet", hotkey)
        self._update_head(netuid, replace_neuron(snapshot, uid, validator_permit=permit))

    def set_hyperparams(self, netuid: int, **changes: Any) -> SubnetHyperparams:
        """Change hyperparameters at the head (simulated sudo), e.g. `commit_reveal_weights_enabled=True`."""
        snapshot = self.subnet(netuid)
        params = msgspec.structs.replace(snapshot.hyperparams, **changes)
        self._update_head(netuid, msgspec.structs.replace(snapshot, hyperparams=params))
        return params

    def add_subnet(
        self, netuid: int, neurons: int = 256, hyperparams: SubnetHyperparams | None = None
    ) -> None:
        if netuid in self.head.subnets:
            raise ChainModuleError("SubnetExists", f"netuid {netuid}")
        self._update_head(
            netuid,
            genesis_subnet(self.seed, netuid, neurons, hyperparams or SubnetHyperparams(), self.head.number),
        )

    # ---------------------------------------------------------------------------------------- reads
    def subnet_state(self, netuid: int, block: BlockInfo | int | None = None) -> SubnetState:
        snapshot = self.subnet(netuid, block)
        neurons = snapshot.neurons
        return SubnetState(
            netuid=netuid,
            hotkeys=[n.hotkey for n in neurons],
            coldkeys=[n.coldkey for n in neurons],
            active=[n.active for n in neurons],
            validator_permit=[n.validator_permit for n in neurons],
            alpha_stake=[n.stakes.alpha for n in neurons],
            tao_stake=[n.stakes.tao for n in neurons],
            total_stake=[n.stakes.total for n in neurons],
        )

    def block_timestamp(self, block: BlockInfo | int | None = None) -> int:
        """The block's `Timestamp.Now` in unix seconds."""
        return clock.timestamp_ms(self.at(block).number) // 1000

    def drand_round(self, block: BlockInfo | int | None = None) -> int:
        return clock.drand_round(self.at(block).number)

    def alpha_prices(self, block: BlockInfo | int | None = None) -> dict[int, int]:
        """Rao of TAO per alpha for the root subnet and every simulated subnet."""
        record = self.at(block)
        netuids = sorted({market.ROOT_NETUID, *record.subnets})
        return {netuid: market.alpha_price(self.seed, netuid, record.number) for netuid in netuids}

    def extrinsic(self, block: BlockInfo | int | None, index: int) -> BlockExtrinsic | None:
        extrinsics = self.at(block).body
        return extrinsics[index] if 0 <= index < len(extrinsics) else None

    def commitments(self, netuid: int, block: BlockInfo | int | None = None) -> dict[str, Commitment]:
        return dict(self.subnet(netuid, block).commitments)

    def revealed_commitments(
        self, netuid: int, block: BlockInfo | int | None = None
    ) -> dict[str, list[RevealedCommitment]]:
        return {hotkey: list(entries) for hotkey, entries in self.subnet(netuid, block).revealed.items()}

    def evm_associations(
        self, netuid: int, block: BlockInfo | int | None = None
    ) -> dict[str, EvmAssociation]:
        snapshot = self.subnet(netuid, block)
        return {
            snapshot.neurons[uid].hotkey: EvmAssociation(
                hotkey=snapshot.neurons[uid].hotkey,
                evm_address=address,
                last_block_where_ownership_was_proven=proven,
            )
            for uid, (address, proven) in sorted(snapshot.evm.items())
        }
