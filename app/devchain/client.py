"""The `ChainClient` over the development chain (`app.devchain.model.SimulatedChain`).

A block producer task makes a block every `block_time` seconds once started, and switches let tests inject
failures (`unreachable`, `delay`) without monkeypatching.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping

from app.chain.client import (
    DEFAULT_VERSION_KEY,
    BlockExtrinsic,
    BlockInfo,
    Certificate,
    ChainClient,
    ChainTimeout,
    ChainUnavailable,
    Commitment,
    EvmAssociation,
    ExtrinsicFailed,
    ExtrinsicResult,
    Neuron,
    RevealedCommitment,
    Signer,
    SubnetHyperparams,
    SubnetState,
    WeightCommit,
    hotkey_of,
    normalize_weights,
)
from app.devchain.calls import Call, CommitWeights, ServeAxon, SetCommitment, SetWeights, digest
from app.devchain.model import SimulatedChain
from app.devchain.state import BlockRecord
from app.settings import DevChainSettings, Settings


def chain_from_settings(devchain: DevChainSettings) -> SimulatedChain:
    """The simulated chain `PYLON_LOCAL_*` describes (the same seed gives the same chain in every process)."""
    return SimulatedChain(
        netuids=devchain.netuids,
        neurons=devchain.neurons,
        seed=devchain.seed,
        hyperparams=SubnetHyperparams(
            tempo=devchain.tempo,
            weights_rate_limit=devchain.weights_rate_limit,
            commit_reveal_weights_enabled=devchain.commit_reveal,
        ),
        validators=devchain.validators,
        commitment_rate_limit=devchain.commitment_rate_limit,
    )


def _weights_call(
    netuid: int, weights: Mapping[int, float], version_key: int, *, commit: bool = False
) -> SetWeights | CommitWeights:
    """The set (or, with `commit`, commit) extrinsic for `weights`, max-upscaled to u16 as the chain keeps
    them; a commit carries the plaintext too, so the simulated reveal can apply it."""
    normalized = normalize_weights(weights)
    uids, values = tuple(normalized), tuple(normalized.values())
    if commit:
        sealed = bytes.fromhex(digest("commit", normalized)[2:])
        return CommitWeights(netuid=netuid, uids=uids, values=values, version_key=version_key, commit=sealed)
    return SetWeights(netuid=netuid, uids=uids, values=values, version_key=version_key)


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
    def from_settings(cls, settings: Settings) -> SimulatedChainClient:
        """The development chain `PYLON_LOCAL_*` describes, bounded by `PYLON_CALL_TIMEOUT` and
        `PYLON_EXTRINSIC_TIMEOUT`."""
        devchain = settings.devchain
        client = cls(
            chain_from_settings(devchain),
            block_time=devchain.block_time,
            call_timeout=settings.chain.call_timeout,
            extrinsic_timeout=settings.chain.extrinsic_timeout,
        )
        # Test and demo switch: every chain call fails as if the node were down (PYLON_LOCAL_UNREACHABLE).
        client.unreachable = devchain.unreachable
        return client

    # ----------------------------------------------------------------------------------- producer
    def start(self) -> None:
        """Start producing blocks (idempotent; call on the client's loop)."""
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

    async def block_timestamp(self, block: BlockInfo | None = None) -> int:
        record = await self._at("block_timestamp", block)
        return self.chain.block_timestamp(record.info)

    async def extrinsic(self, block: BlockInfo, index: int) -> BlockExtrinsic | None:
        record = await self._at("extrinsic", block)
        return self.chain.extrinsic(record.info, index)

    async def commitments(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Commitment]:
        record = await self._at("commitments", block)
        return self.chain.commitments(netuid, record.info)

    async def revealed_commitments(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, list[RevealedCommitment]]:
        record = await self._at("revealed_commitments", block)
        return self.chain.revealed_commitments(netuid, record.info)

    async def alpha_prices(self, block: BlockInfo | None = None) -> dict[int, int]:
        record = await self._at("alpha_prices", block)
        return self.chain.alpha_prices(record.info)

    async def evm_associations(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, EvmAssociation]:
        record = await self._at("evm_associations", block)
        return self.chain.evm_associations(netuid, record.info)

    async def drand_last_stored_round(self, block: BlockInfo | None = None) -> int:
        record = await self._at("drand_last_stored_round", block)
        return self.chain.drand_round(record.info)

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

    # -------------------------------------------------------------------------------- registration
    async def register_dev_validator(
        self, hotkey: str, netuids: Collection[int] | None = None
    ) -> dict[int, int]:
        """Register `hotkey` with a validator permit on every simulated subnet in `netuids` (None: all), at
        the head, without waiting for a block; returns {netuid: uid}."""
        return {
            netuid: self.chain.register(netuid, hotkey, validator=True)
            for netuid in self.chain.netuids
            if netuids is None or netuid in netuids
        }

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
        return await self._submit("set_weights", signer, _weights_call(netuid, weights, version_key))

    async def commit_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        call = _weights_call(netuid, weights, version_key, commit=True)
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

    async def set_commitment(self, signer: Signer, netuid: int, data: bytes) -> ExtrinsicResult:
        call = SetCommitment(netuid=netuid, data=bytes(data))
        return await self._submit("set_commitment", signer, call)

    async def set_timelocked_commitment(
        self, signer: Signer, netuid: int, data: str, blocks_until_reveal: int
    ) -> ExtrinsicResult:
        reveal_round = self.chain.timelock_round(blocks_until_reveal)
        call = SetCommitment(
            netuid=netuid,
            # A stand-in ciphertext: the simulation keeps the plaintext to reveal (no drand, no encryption).
            data=bytes.fromhex(digest("tlock", data, reveal_round)[2:]),
            reveal_round=reveal_round,
            plaintext=data,
        )
        return await self._submit("set_timelocked_commitment", signer, call)
