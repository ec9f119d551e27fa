"""A deterministic local subnet: the chain behind `PYLON_NETWORK=local`, dev mode and the tests.

Two layers:

- `SimulatedChain` is a pure state machine: no asyncio, no HTTP, no clock. Blocks advance when
  `produce_block()` is called; extrinsics are queued with `submit()` and applied, in order, when the next
  block is produced, with subtensor's rules and error names. Every block keeps a snapshot of the subnets
  (copy-on-write, so an unchanged subnet costs nothing), so reads at older blocks see that block's state
  until it falls out of `state_history` blocks (then `StatePruned`, as a pruning node would answer).
  A substrate JSON-RPC front (app/chain/localnet/) can wrap this same object.
- `SimulatedChainClient` is the `ChainClient` over it, with a block producer task every `block_time`
  seconds and switches for tests to inject failures (`unreachable`, `delay`) without monkeypatching.

Everything derives from `seed`: the same seed gives the same hotkeys, stakes, axons and block hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

import msgspec

from app.chain.client import (
    DEFAULT_VERSION_KEY,
    U16_MAX,
    AxonInfo,
    BlockInfo,
    BlockNotFound,
    Certificate,
    ChainClient,
    ChainTimeout,
    ChainUnavailable,
    ExtrinsicFailed,
    ExtrinsicResult,
    Neuron,
    Signer,
    Stakes,
    StatePruned,
    SubnetHyperparams,
    SubnetState,
    UnknownNetuid,
    WeightCommit,
    hotkey_of,
    normalize_weights,
)

# Subtensor weighs TAO stake against alpha stake with this factor (its default `TaoWeight` is 0.18).
TAO_WEIGHT = 0.18
# Subtensor caps unrevealed commits per hotkey.
MAX_UNREVEALED_COMMITS = 10


class ChainModuleError(Exception):
    """A dispatch error, named as subtensor's `SubtensorModule` error (what a JSON-RPC front reports)."""

    def __init__(self, name: str, message: str = "") -> None:
        self.name = name
        super().__init__(f"{name}: {message}" if message else name)


# --------------------------------------------------------------------------------------------- calls
class SetWeights(msgspec.Struct, frozen=True, kw_only=True, tag="set_weights"):
    netuid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]  # u16, as sent on the wire
    version_key: int


class CommitWeights(msgspec.Struct, frozen=True, kw_only=True, tag="commit_weights"):
    netuid: int
    # The plaintext rides along so the simulated drand reveal can apply it; a real chain sees ciphertext.
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int
    commit: bytes = b""


class ServeAxon(msgspec.Struct, frozen=True, kw_only=True, tag="serve_axon"):
    netuid: int
    ip: str
    port: int
    protocol: int = 4
    version: int = 0
    certificate: Certificate | None = None


Call = SetWeights | CommitWeights | ServeAxon


class Extrinsic(msgspec.Struct, frozen=True, kw_only=True):
    signer: str  # ss58 hotkey
    call: Call
    hash: str
    submitted_at: int  # head number when submitted


# --------------------------------------------------------------------------------------------- state
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


def _digest(*parts: object) -> str:
    return "0x" + hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=32).hexdigest()


def keypair_for(seed: int, netuid: int, uid: int, kind: Literal["hot", "cold"] = "hot") -> Any:
    """The deterministic sr25519 keypair of a simulated neuron (tests sign with it, e.g. Epistula)."""
    from bittensor_wallet import Keypair

    secret = hashlib.blake2b(f"pylon-sim:{seed}:{netuid}:{uid}:{kind}".encode(), digest_size=32).hexdigest()
    return Keypair.create_from_seed(secret)  # type: ignore[arg-type]  # the stub says bytes; it takes hex


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
    ) -> None:
        self.seed = seed
        self.state_history = state_history
        self._rng = random.Random(seed)
        self._nonce = 0
        self.pending: list[Extrinsic] = []
        self.receipts: dict[str, ExtrinsicResult] = {}
        self._receipt_order: list[str] = []
        self._blocks: OrderedDict[int, BlockRecord] = OrderedDict()
        self._hashes: dict[str, int] = {}
        self.genesis_number = start_block
        params = hyperparams or SubnetHyperparams()
        subnets = {netuid: self._genesis_subnet(netuid, neurons, params, start_block) for netuid in netuids}
        genesis = BlockRecord(
            number=start_block,
            hash=_digest("block", seed, start_block),
            parent_hash=_digest("block", seed, start_block - 1),
            subnets=subnets,
        )
        self._append(genesis)
        for hotkey in validators:
            for netuid in subnets:
                self.register(netuid, hotkey, validator=True)

    # ------------------------------------------------------------------------------------ genesis
    def _genesis_subnet(
        self, netuid: int, count: int, params: SubnetHyperparams, block: int
    ) -> SubnetSnapshot:
        rng = random.Random(f"{self.seed}:{netuid}")
        raw_stakes = [rng.lognormvariate(8, 2.2) for _ in range(count)]
        ranked = sorted(range(count), key=lambda uid: raw_stakes[uid], reverse=True)
        permitted = set(ranked[: params.max_validators])
        neurons = []
        for uid in range(count):
            hotkey = keypair_for(self.seed, netuid, uid).ss58_address
            coldkey = keypair_for(self.seed, netuid, uid % max(1, count // 3), "cold").ss58_address
            validator = uid in permitted
            alpha = raw_stakes[uid]
            tao = alpha * rng.uniform(0.0, 0.5)
            if validator:
                axon = AxonInfo(ip="0.0.0.0", port=0, protocol=0)  # noqa: S104 - validators rarely serve
            else:
                octets = (rng.randint(11, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
                ip = ".".join(map(str, octets))
                axon = AxonInfo(
                    ip=ip, port=rng.choice((8091, 8080, 9000, rng.randint(1024, 65535))), protocol=4
                )
            neurons.append(
                Neuron(
                    uid=uid,
                    coldkey=coldkey,
                    hotkey=hotkey,
                    active=True,
                    axon_info=axon,
                    stake=alpha,
                    rank=0.0,
                    emission=0.0,
                    incentive=0.0,
                    consensus=0.0,
                    trust=0.0,
                    validator_trust=0.0,
                    dividends=0.0,
                    last_update=block - rng.randint(0, params.tempo),
                    validator_permit=validator,
                    pruning_score=U16_MAX,
                    stakes=Stakes(alpha=alpha, tao=tao, total=alpha + tao * TAO_WEIGHT),
                )
            )
        snapshot = SubnetSnapshot(netuid=netuid, hyperparams=params, neurons=tuple(neurons))
        return self._run_epoch(snapshot, block)

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
        block_hash = _digest("block", self.seed, number)
        for extrinsic in self.pending:
            included.append(extrinsic.hash)
            error: str | None = None
            try:
                self._apply(subnets, extrinsic, number)
            except ChainModuleError as exc:
                error = exc.name
            result = ExtrinsicResult(
                block=BlockInfo(number=number, hash=block_hash),
                extrinsic_hash=extrinsic.hash,
                success=error is None,
                error_name=error,
                reveal_round=self._reveal_round(subnets[extrinsic.call.netuid], number)
                if isinstance(extrinsic.call, CommitWeights) and extrinsic.call.netuid in subnets
                else None,
            )
            self._record_receipt(result)
        self.pending = []
        for netuid, snapshot in list(subnets.items()):
            snapshot = self._reveal_due(snapshot, number)
            if self._epoch_due(netuid, snapshot.hyperparams.tempo, number):
                snapshot = self._run_epoch(snapshot, number)
            subnets[netuid] = snapshot
        record = BlockRecord(
            number=number,
            hash=block_hash,
            parent_hash=parent.hash,
            subnets=subnets,
            extrinsics=tuple(included),
        )
        self._append(record)
        return record

    def _record_receipt(self, result: ExtrinsicResult) -> None:
        self.receipts[result.extrinsic_hash] = result
        self._receipt_order.append(result.extrinsic_hash)
        if len(self._receipt_order) > 10_000:
            self.receipts.pop(self._receipt_order.pop(0), None)

    @staticmethod
    def _epoch_due(netuid: int, tempo: int, block: int) -> bool:
        # Subtensor's `blocks_until_next_epoch`: the epoch runs when (block + netuid + 1) % (tempo + 1) == 0.
        return tempo > 0 and (block + netuid + 1) % (tempo + 1) == 0

    @staticmethod
    def next_epoch_block(netuid: int, tempo: int, block: int) -> int:
        """The first block after `block` at which the subnet's epoch runs."""
        period = tempo + 1
        return block + 1 + (-(block + 1 + netuid + 1)) % period

    def _reveal_round(self, snapshot: SubnetSnapshot, block: int) -> int:
        # The simulated "drand round" is a block number: the first block of the epoch
        # `commit_reveal_period` epochs after the commit's.
        params = snapshot.hyperparams
        reveal = block
        for _ in range(max(1, params.commit_reveal_period)):
            reveal = self.next_epoch_block(snapshot.netuid, params.tempo, reveal)
        return reveal

    # ---------------------------------------------------------------------------------- extrinsics
    def submit(self, signer: str, call: Call) -> str:
        """Queue an extrinsic for the next block; returns its hash (look for it in `receipts`)."""
        self._nonce += 1
        extrinsic_hash = _digest("xt", self.seed, signer, self._nonce, self.head.number)
        self.pending.append(
            Extrinsic(signer=signer, call=call, hash=extrinsic_hash, submitted_at=self.head.number)
        )
        return extrinsic_hash

    def _apply(self, subnets: dict[int, SubnetSnapshot], extrinsic: Extrinsic, block: int) -> None:
        call = extrinsic.call
        snapshot = subnets.get(call.netuid)
        if snapshot is None:
            raise ChainModuleError("SubNetworkDoesNotExist", f"netuid {call.netuid}")
        if isinstance(call, SetWeights):
            if snapshot.hyperparams.commit_reveal_weights_enabled:
                raise ChainModuleError("CommitRevealEnabled", "use commit_weights on this subnet")
            subnets[call.netuid] = self._set_weights(
                snapshot, extrinsic.signer, call.uids, call.values, call.version_key, block
            )
        elif isinstance(call, CommitWeights):
            subnets[call.netuid] = self._commit(snapshot, extrinsic.signer, call, block)
        elif isinstance(call, ServeAxon):
            subnets[call.netuid] = self._serve_axon(snapshot, extrinsic.signer, call)

    def _check_weights(
        self,
        snapshot: SubnetSnapshot,
        hotkey: str,
        uids: tuple[int, ...],
        values: tuple[int, ...],
        version_key: int,
    ) -> int:
        """Subtensor's `do_set_weights` checks; returns the caller's uid."""
        params = snapshot.hyperparams
        if len(uids) != len(values):
            raise ChainModuleError("WeightVecNotEqualSize")
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            raise ChainModuleError("HotKeyNotRegisteredInSubNet", f"{hotkey} on netuid {snapshot.netuid}")
        if version_key < params.weights_version:
            raise ChainModuleError(
                "IncorrectWeightVersionKey",
                f"version_key {version_key} < weights_version {params.weights_version}",
            )
        self_only = len(uids) == 1 and uids[0] == uid
        if not snapshot.neurons[uid].validator_permit and not self_only:
            raise ChainModuleError("NeuronNoValidatorPermit")
        if len(set(uids)) != len(uids):
            raise ChainModuleError("DuplicateUids")
        if any(u < 0 or u >= len(snapshot.neurons) for u in uids):
            raise ChainModuleError("UidVecContainInvalidOne")
        if not self_only and len(uids) < min(params.min_allowed_weights, len(snapshot.neurons)):
            raise ChainModuleError("WeightVecLengthIsLow")
        if any(v < 0 or v > U16_MAX for v in values):
            raise ChainModuleError("InvalidWeight")
        total = sum(values)
        # Subtensor normalises to sum 65535 and refuses any share above the max-weight limit.
        limited = not self_only and total and params.max_weights_limit < U16_MAX
        if limited and max(v * U16_MAX // total for v in values) > params.max_weights_limit:
            raise ChainModuleError("MaxWeightExceeded")
        return uid

    def _rate_limited(self, snapshot: SubnetSnapshot, uid: int, block: int) -> bool:
        limit = snapshot.hyperparams.weights_rate_limit
        last = snapshot.neurons[uid].last_update
        return limit > 0 and block - last < limit

    def _set_weights(
        self,
        snapshot: SubnetSnapshot,
        hotkey: str,
        uids: tuple[int, ...],
        values: tuple[int, ...],
        version_key: int,
        block: int,
        *,
        revealing: bool = False,
    ) -> SubnetSnapshot:
        uid = self._check_weights(snapshot, hotkey, uids, values, version_key)
        if not revealing and self._rate_limited(snapshot, uid, block):
            raise ChainModuleError(
                "SettingWeightsTooFast", f"uid {uid} last set at {snapshot.neurons[uid].last_update}"
            )
        top = max(values, default=0)
        stored = tuple(
            (u, round(v * U16_MAX / top) if top else 0)
            for u, v in sorted(zip(uids, values, strict=True))
            if v
        )
        weights = dict(snapshot.weights)
        weights[uid] = stored
        return self._replace_neuron(
            msgspec.structs.replace(snapshot, weights=weights), uid, last_update=block
        )

    def _commit(
        self, snapshot: SubnetSnapshot, hotkey: str, call: CommitWeights, block: int
    ) -> SubnetSnapshot:
        params = snapshot.hyperparams
        if not params.commit_reveal_weights_enabled:
            raise ChainModuleError("CommitRevealDisabled", f"netuid {snapshot.netuid}")
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            raise ChainModuleError("HotKeyNotRegisteredInSubNet", f"{hotkey} on netuid {snapshot.netuid}")
        if self._rate_limited(snapshot, uid, block):
            raise ChainModuleError("CommittingWeightsTooFast")
        if sum(1 for c in snapshot.commits if c.hotkey == hotkey) >= MAX_UNREVEALED_COMMITS:
            raise ChainModuleError("TooManyUnrevealedCommits")
        commit = Commit(
            hotkey=hotkey,
            commit_block=block,
            reveal_round=self._reveal_round(snapshot, block),
            uids=call.uids,
            values=call.values,
            version_key=call.version_key,
        )
        snapshot = msgspec.structs.replace(snapshot, commits=(*snapshot.commits, commit))
        return self._replace_neuron(snapshot, uid, last_update=block)

    def _reveal_due(self, snapshot: SubnetSnapshot, block: int) -> SubnetSnapshot:
        due = [c for c in snapshot.commits if c.reveal_round <= block]
        if not due:
            return snapshot
        snapshot = msgspec.structs.replace(
            snapshot, commits=tuple(c for c in snapshot.commits if c.reveal_round > block)
        )
        for commit in due:
            # A reveal that fails the checks is dropped silently, as the chain's drand reveal does.
            try:
                snapshot = self._set_weights(
                    snapshot,
                    commit.hotkey,
                    commit.uids,
                    commit.values,
                    commit.version_key,
                    block,
                    revealing=True,
                )
            except ChainModuleError:
                continue
        return snapshot

    def _serve_axon(self, snapshot: SubnetSnapshot, hotkey: str, call: ServeAxon) -> SubnetSnapshot:
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            raise ChainModuleError("HotKeyNotRegisteredInNetwork", f"{hotkey} on netuid {snapshot.netuid}")
        if not 0 <= call.port <= 65535:
            raise ChainModuleError("InvalidPort")
        if not _valid_ip(call.ip):
            raise ChainModuleError("InvalidIpAddress")
        axon = AxonInfo(ip=call.ip, port=call.port, protocol=call.protocol)
        if call.certificate is not None:
            certificates = dict(snapshot.certificates)
            certificates[hotkey] = call.certificate
            snapshot = msgspec.structs.replace(snapshot, certificates=certificates)
        return self._replace_neuron(snapshot, uid, axon_info=axon)

    # ------------------------------------------------------------------------------- direct changes
    def _replace_neuron(self, snapshot: SubnetSnapshot, uid: int, **changes: Any) -> SubnetSnapshot:
        neurons = list(snapshot.neurons)
        neurons[uid] = msgspec.structs.replace(neurons[uid], **changes)
        return msgspec.structs.replace(snapshot, neurons=tuple(neurons))

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
            neuron = Neuron(
                uid=uid,
                coldkey=coldkey or hotkey,
                hotkey=hotkey,
                active=True,
                axon_info=AxonInfo(ip="0.0.0.0", port=0, protocol=0),  # noqa: S104
                stake=0.0,
                rank=0.0,
                emission=0.0,
                incentive=0.0,
                consensus=0.0,
                trust=0.0,
                validator_trust=0.0,
                dividends=0.0,
                # Zero so that a fresh registrant may set weights at once.
                last_update=0,
                validator_permit=False,
                pruning_score=U16_MAX,
                stakes=Stakes(alpha=0.0, tao=0.0, total=0.0),
            )
            neurons = list(snapshot.neurons)
            neurons[uid] = neuron
            weights = {k: v for k, v in snapshot.weights.items() if k != uid}
            certificates = {
                k: v for k, v in snapshot.certificates.items() if k != snapshot.neurons[uid].hotkey
            }
            snapshot = msgspec.structs.replace(
                snapshot, neurons=tuple(neurons), weights=weights, certificates=certificates
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
            snapshot = self._replace_neuron(snapshot, uid, **changes)
        self._update_head(netuid, snapshot)
        return uid

    def set_validator_permit(self, netuid: int, hotkey: str, permit: bool = True) -> None:
        snapshot = self.subnet(netuid)
        uid = snapshot.uid_of(hotkey)
        if uid is None:
            raise ChainModuleError("HotKeyNotRegisteredInSubNet", hotkey)
        self._update_head(netuid, self._replace_neuron(snapshot, uid, validator_permit=permit))

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
            self._genesis_subnet(netuid, neurons, hyperparams or SubnetHyperparams(), self.head.number),
        )

    # ---------------------------------------------------------------------------------------- epoch
    def _run_epoch(self, snapshot: SubnetSnapshot, block: int) -> SubnetSnapshot:
        """A deterministic stand-in for Yuma consensus: scores drift, emission follows the scores."""
        rng = random.Random(f"{self.seed}:{snapshot.netuid}:{block}")
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


def _valid_ip(ip: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------------------------- client
class SimulatedChainClient(ChainClient):
    """`ChainClient` over a `SimulatedChain`, producing a block every `block_time` seconds once started.

    Test switches: `unreachable = True` makes every call raise ChainUnavailable (the producer keeps going,
    as the real chain would); `delay` adds seconds to every call (bounded by `call_timeout`);
    `calls` counts calls by method name.
    """

    def __init__(
        self,
        chain: SimulatedChain,
        *,
        block_time: float = 12.0,
        call_timeout: float = 10.0,
        extrinsic_timeout: float = 60.0,
    ) -> None:
        self.chain = chain
        self.block_time = block_time
        self.call_timeout = call_timeout
        self.extrinsic_timeout = extrinsic_timeout
        self.poll_interval = min(1.0, block_time / 2)
        self.unreachable = False
        self.delay = 0.0
        self.calls: Counter[str] = Counter()
        self._producer: asyncio.Task[None] | None = None
        self._new_block = asyncio.Condition()

    @classmethod
    def from_settings(cls, chain_settings: Any) -> SimulatedChainClient:
        chain = SimulatedChain(
            netuids=chain_settings.local_netuids,
            neurons=chain_settings.local_neurons,
            seed=chain_settings.local_seed,
            hyperparams=SubnetHyperparams(
                tempo=chain_settings.local_tempo,
                weights_rate_limit=chain_settings.local_weights_rate_limit,
                commit_reveal_weights_enabled=chain_settings.local_commit_reveal,
            ),
            validators=chain_settings.local_validators,
        )
        return cls(
            chain,
            block_time=chain_settings.local_block_time,
            call_timeout=chain_settings.call_timeout,
            extrinsic_timeout=chain_settings.extrinsic_timeout,
        )

    # ----------------------------------------------------------------------------------- producer
    def start(self) -> None:
        """Start producing blocks (idempotent)."""
        if self._producer is None or self._producer.done():
            self._producer = asyncio.get_running_loop().create_task(
                self._produce_forever(), name="sim-blocks"
            )

    def set_block_time(self, seconds: float) -> None:
        """Change the block time; a running producer restarts on the new pace (call on the client's loop)."""
        self.block_time = seconds
        self.poll_interval = min(1.0, seconds / 2)
        if self._producer is not None and not self._producer.done():
            self._producer.cancel()
            self._producer = None
            self.start()

    async def _produce_forever(self) -> None:
        while True:
            await asyncio.sleep(self.block_time)
            await self.produce_block()

    async def produce_block(self) -> BlockInfo:
        """Produce one block now (tests call this directly for exact control) and wake the waiters."""
        record = self.chain.produce_block()
        async with self._new_block:
            self._new_block.notify_all()
        return record.info

    async def close(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None

    # -------------------------------------------------------------------------------------- plumbing
    async def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.delay:
            try:
                await asyncio.wait_for(asyncio.sleep(self.delay), self.call_timeout)
            except TimeoutError as exc:
                raise ChainTimeout(f"{operation}: no answer within {self.call_timeout}s") from exc
        if self.unreachable:
            raise ChainUnavailable(f"{operation}: simulated chain is unreachable")

    async def _at(self, operation: str, block: BlockInfo | None) -> BlockRecord:
        await self._enter(operation)
        return self.chain.at(block)

    # ------------------------------------------------------------------------------------------ reads
    async def head(self) -> BlockInfo:
        await self._enter("head")
        return self.chain.head.info

    async def block(self, number: int) -> BlockInfo:
        await self._enter("block")
        return self.chain.block(number).info

    async def neurons(self, netuid: int, block: BlockInfo | None = None) -> list[Neuron]:
        record = await self._at("neurons", block)
        return list(self.chain.subnet(netuid, record.info).neurons)

    async def hyperparams(self, netuid: int, block: BlockInfo | None = None) -> SubnetHyperparams:
        record = await self._at("hyperparams", block)
        return self.chain.subnet(netuid, record.info).hyperparams

    async def subnet_state(self, netuid: int, block: BlockInfo | None = None) -> SubnetState:
        record = await self._at("subnet_state", block)
        return self.chain.subnet_state(netuid, record.info)

    async def certificates(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Certificate]:
        record = await self._at("certificates", block)
        return dict(self.chain.subnet(netuid, record.info).certificates)

    async def weights(self, netuid: int, block: BlockInfo | None = None) -> dict[int, dict[int, int]]:
        record = await self._at("weights", block)
        return {v: dict(w) for v, w in self.chain.subnet(netuid, record.info).weights.items()}

    async def pending_commits(self, netuid: int, block: BlockInfo | None = None) -> list[WeightCommit]:
        record = await self._at("pending_commits", block)
        return [
            WeightCommit(hotkey=c.hotkey, commit_block=c.commit_block, reveal_round=c.reveal_round)
            for c in self.chain.subnet(netuid, record.info).commits
        ]

    async def subscribe_heads(self) -> AsyncIterator[BlockInfo]:
        """Each new head as the producer makes it (a real subscription, not polling)."""
        await self._enter("subscribe_heads")
        seen = [self.chain.head.number]
        yield self.chain.head.info
        while True:
            async with self._new_block:
                await self._new_block.wait_for(lambda: self.chain.head.number > seen[0])
            if self.unreachable:
                raise ChainUnavailable("subscription dropped: simulated chain is unreachable")
            seen[0] = self.chain.head.number
            yield self.chain.head.info

    # ------------------------------------------------------------------------------------- extrinsics
    async def _submit(self, operation: str, signer: Signer, call: Call) -> ExtrinsicResult:
        await self._enter(operation)
        extrinsic_hash = self.chain.submit(hotkey_of(signer).ss58_address, call)
        try:
            async with asyncio.timeout(self.extrinsic_timeout):
                async with self._new_block:
                    await self._new_block.wait_for(lambda: extrinsic_hash in self.chain.receipts)
        except TimeoutError as exc:
            raise ChainTimeout(f"{operation}: not included within {self.extrinsic_timeout}s") from exc
        result = self.chain.receipts[extrinsic_hash]
        if not result.success:
            raise ExtrinsicFailed(result.error_name or "Unknown", operation, result=result)
        return result

    async def set_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        normalized = normalize_weights(weights)
        call = SetWeights(
            netuid=netuid,
            uids=tuple(normalized),
            values=tuple(normalized.values()),
            version_key=version_key,
        )
        return await self._submit("set_weights", signer, call)

    async def commit_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        normalized = normalize_weights(weights)
        call = CommitWeights(
            netuid=netuid,
            uids=tuple(normalized),
            values=tuple(normalized.values()),
            version_key=version_key,
            commit=bytes.fromhex(_digest("commit", normalized)[2:]),
        )
        return await self._submit("commit_weights", signer, call)

    async def serve_axon(
        self,
        signer: Signer,
        netuid: int,
        ip: str,
        port: int,
        protocol: int = 4,
        certificate: Certificate | None = None,
    ) -> ExtrinsicResult:
        call = ServeAxon(netuid=netuid, ip=ip, port=port, protocol=protocol, certificate=certificate)
        return await self._submit("serve_axon", signer, call)
