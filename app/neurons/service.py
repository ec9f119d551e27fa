"""Metagraph reads for the API and the CLI: everything goes through the metagraph cache or the chain client.

Errors are the chain layer's (`UnknownNetuid`, `BlockNotFound`, `ChainUnavailable`...) plus `HotkeyNotFound`
and `CertificateNotFound`; the controller maps them to HTTP statuses, the CLI to one-line messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.chain.client import (
    BlockInfo,
    Certificate,
    CertificateKeypair,
    ChainClient,
    ChainError,
    hotkey_of,
)
from app.chain.metagraph import CachedMetagraph, MetagraphCache
from app.neurons.schemas import HyperparamsResponse, NeuronResponse


class HotkeyNotFound(ChainError):
    def __init__(self, netuid: int, hotkey: str) -> None:
        super().__init__(f"hotkey {hotkey} is not registered on subnet {netuid}")


class CertificateNotFound(ChainError):
    def __init__(self, netuid: int, hotkey: str) -> None:
        super().__init__(f"no certificate for hotkey {hotkey} on subnet {netuid}")


class NoWallet(ChainError):
    """The route signs with Pylon's wallet and none is configured."""


class NeuronsService:
    def __init__(
        self, cache: MetagraphCache, client: ChainClient, signer: Callable[[], Any] | None = None
    ) -> None:
        """`signer` returns Pylon's wallet (or keypair) when the route signs, None when none is configured."""
        self.cache = cache
        self.client = client
        self.signer = signer or (lambda: None)

    async def head(self) -> BlockInfo:
        return await self.client.head()

    async def latest(self, netuid: int) -> CachedMetagraph:
        return await self.cache.latest(netuid)

    async def at_block(self, netuid: int, number: int) -> CachedMetagraph:
        return await self.cache.at_block(netuid, number)

    async def neuron(self, netuid: int, hotkey: str) -> NeuronResponse:
        cached = await self.cache.latest(netuid)
        neuron = cached.neurons.get(hotkey)
        if neuron is None:
            raise HotkeyNotFound(netuid, hotkey)
        return NeuronResponse(block=cached.block, neuron=neuron)

    async def hyperparams(self, netuid: int) -> HyperparamsResponse:
        block, params = await self.cache.hyperparams(netuid)
        return HyperparamsResponse(netuid=netuid, block=block, hyperparams=params)

    async def certificates(self, netuid: int) -> dict[str, Certificate]:
        cached = await self.cache.latest(netuid)
        return await self.client.certificates(netuid, cached.block)

    async def certificate(self, netuid: int, hotkey: str) -> Certificate:
        cached = await self.cache.latest(netuid)
        certificate = await self.client.certificate(netuid, hotkey, cached.block)
        if certificate is None:
            raise CertificateNotFound(netuid, hotkey)
        return certificate

    def _signer(self) -> Any:
        signer = self.signer()
        if signer is None:
            raise NoWallet("no wallet is configured for this Pylon; certificates/self needs one")
        return signer

    async def own_certificate(self, netuid: int) -> Certificate:
        return await self.certificate(netuid, hotkey_of(self._signer()).ss58_address)

    async def generate_certificate(self, netuid: int, algorithm: int) -> CertificateKeypair:
        return await self.client.generate_certificate(self._signer(), netuid, algorithm)
