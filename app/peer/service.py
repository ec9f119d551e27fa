"""bittensor-pylon's resources over Pylon's parts: the metagraph cache, the chain client, the identities.

Reads "at the latest block" of a subnet use the latest cached metagraph's block, so a validator's neurons,
validators and commitments read one after another agree with each other. Errors are the chain layer's
plus the ones below; the controller maps them to the statuses bittensor-pylon's client expects.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.chain.client import (
    BlockExtrinsic,
    BlockInfo,
    ChainClient,
    ChainError,
    Commitment,
    EvmAssociation,
    RevealedCommitment,
    UnknownNetuid,
)
from app.chain.metagraph import CachedMetagraph, MetagraphCache
from app.peer.schemas import ValidatorsResponse
from app.weights.identities import Identity
from app.weights.service import epoch_end

# The Commitments pallet's largest raw field.
MAX_COMMITMENT_BYTES = 128


class NotFound(ChainError):
    """A resource that does not exist (404)."""


class UnknownIdentity(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"identity {name!r} not found")


class WrongNetuid(ChainError):
    """The identity works on another subnet (308: bittensor-pylon's client then looks its netuid up)."""

    def __init__(self, name: str, netuid: int, expected: int) -> None:
        self.expected = expected
        super().__init__(f"identity {name!r} works on subnet {expected}, not {netuid}")


def identity_netuid(identity: Identity, default_netuid: int) -> int:
    """The subnet an identity is listed with: its only netuid, else the default one if it may use it."""
    if identity.netuids is None or default_netuid in identity.netuids:
        return default_netuid
    return min(identity.netuids)


def validators_of(cached: CachedMetagraph) -> ValidatorsResponse:
    validators = [neuron for neuron in cached.neurons.values() if neuron.validator_permit]
    validators.sort(key=lambda neuron: neuron.stakes.total, reverse=True)
    return ValidatorsResponse(block=cached.block, validators=validators)


class PeerService:
    def __init__(
        self,
        cache: MetagraphCache,
        chain: ChainClient,
        identities: Mapping[str, Identity],
        default_netuid: int,
    ) -> None:
        self.cache = cache
        self.chain = chain
        self.identities = identities
        self.default_netuid = default_netuid

    # ------------------------------------------------------------------------------------ identities
    def listed_identities(self) -> dict[str, int]:
        return {
            name: identity_netuid(identity, self.default_netuid) for name, identity in self.identities.items()
        }

    def identity(self, name: str, netuid: int | None = None) -> Identity:
        """The named identity; UnknownIdentity, or WrongNetuid when it may not work on `netuid`."""
        identity = self.identities.get(name)
        if identity is None:
            raise UnknownIdentity(name)
        if netuid is not None and not identity.allows_netuid(netuid):
            raise WrongNetuid(name, netuid, identity_netuid(identity, self.default_netuid))
        return identity

    # ---------------------------------------------------------------------------------------- blocks
    async def _block(self, number: int | None) -> BlockInfo:
        return await self.chain.head() if number is None else await self.chain.block(number)

    async def _subnet_block(self, netuid: int) -> BlockInfo:
        """The latest cached metagraph's block (UnknownNetuid for a subnet that does not exist)."""
        return (await self.cache.latest(netuid)).block

    async def block_info(self) -> tuple[BlockInfo, int]:
        head = await self.chain.head()
        return head, await self.chain.block_timestamp(head)

    async def extrinsic(self, number: int, index: int) -> BlockExtrinsic:
        block = await self.chain.block(number)
        found = await self.chain.extrinsic(block, index)
        if found is None:
            raise NotFound(f"block {number} has no extrinsic {index}")
        return found

    async def drand_round(self) -> int:
        return await self.chain.drand_last_stored_round(await self.chain.head())

    # --------------------------------------------------------------------------------------- neurons
    async def validators(self, netuid: int, number: int | None) -> ValidatorsResponse:
        cached = await (self.cache.latest(netuid) if number is None else self.cache.at_block(netuid, number))
        return validators_of(cached)

    # ----------------------------------------------------------------------------------- commitments
    async def commitments(self, netuid: int) -> tuple[BlockInfo, dict[str, Commitment]]:
        """Commitments of hotkeys registered on the subnet now (a deregistered hotkey's stay on chain)."""
        cached = await self.cache.latest(netuid)
        found = await self.chain.commitments(netuid, cached.block)
        return cached.block, {hotkey: c for hotkey, c in found.items() if hotkey in cached.neurons}

    async def commitment(self, netuid: int, hotkey: str) -> tuple[BlockInfo, Commitment]:
        block = await self._subnet_block(netuid)
        found = await self.chain.commitment(netuid, hotkey, block)
        if found is None:
            raise NotFound(f"no commitment for hotkey {hotkey} on subnet {netuid}")
        return block, found

    async def revealed_commitments(
        self, netuid: int
    ) -> tuple[BlockInfo, dict[str, list[RevealedCommitment]]]:
        block = await self._subnet_block(netuid)
        return block, await self.chain.revealed_commitments(netuid, block)

    async def revealed_commitments_of(
        self, netuid: int, hotkey: str
    ) -> tuple[BlockInfo, list[RevealedCommitment]]:
        block, revealed = await self.revealed_commitments(netuid)
        if not revealed.get(hotkey):
            raise NotFound(f"no revealed commitments for hotkey {hotkey} on subnet {netuid}")
        return block, revealed[hotkey]

    async def set_commitment(self, identity: Identity, netuid: int, data: bytes) -> None:
        await self._subnet_block(netuid)
        await self.chain.set_commitment(identity.keypair, netuid, data)

    async def set_timelocked_commitment(
        self, identity: Identity, netuid: int, data: str, blocks_until_reveal: int
    ) -> int:
        await self._subnet_block(netuid)
        result = await self.chain.set_timelocked_commitment(
            identity.keypair, netuid, data, blocks_until_reveal
        )
        if result.reveal_round is None:
            raise ChainError("the chain did not report the commitment's reveal round")
        return result.reveal_round

    # ---------------------------------------------------------------------------------------- prices
    async def prices(self, number: int | None) -> tuple[BlockInfo, dict[int, int]]:
        block = await self._block(number)
        return block, await self.chain.alpha_prices(block)

    async def price(self, netuid: int, number: int | None) -> tuple[BlockInfo, int]:
        block, prices = await self.prices(number)
        if netuid not in prices:
            raise UnknownNetuid(netuid)
        return block, prices[netuid]

    async def evm_associations(self, netuid: int) -> tuple[BlockInfo, dict[str, EvmAssociation]]:
        block = await self._subnet_block(netuid)
        return block, await self.chain.evm_associations(netuid, block)

    # --------------------------------------------------------------------------------------- weights
    async def weights_submitted(self, identity: Identity, netuid: int, number: int) -> bool:
        """Whether the identity's hotkey set (or committed) weights in the epoch containing block `number`:
        after the previous epoch ran and up to that block."""
        cached = await self.cache.at_block(netuid, number)
        params = await self.chain.hyperparams(netuid, cached.block)
        since = epoch_end(number, netuid, params.tempo) - (params.tempo + 1)
        neuron = cached.neurons.get(identity.hotkey_ss58)
        if neuron is not None and neuron.last_update > since:
            return True
        commits = await self.chain.pending_commits(netuid, cached.block)
        return any(c.hotkey == identity.hotkey_ss58 and c.commit_block > since for c in commits)
