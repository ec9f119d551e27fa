"""Bodies of the neurons routes; the metagraph is `app.chain.client.Metagraph` (bittensor-pylon's shape)."""

from __future__ import annotations

import msgspec

from app.chain.client import BlockInfo, CertificateAlgorithm, Neuron, SubnetHyperparams


class NeuronResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One neuron at the latest block."""

    block: BlockInfo
    neuron: Neuron


class HyperparamsResponse(msgspec.Struct, frozen=True, kw_only=True):
    netuid: int
    block: BlockInfo
    hyperparams: SubnetHyperparams


class GenerateCertificateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """bittensor-pylon's body for POST certificates/self: the key algorithm (1 = ED25519)."""

    # The enum, so msgspec refuses an algorithm the chain does not know (a 400, not a ValueError later).
    algorithm: CertificateAlgorithm = CertificateAlgorithm.ED25519
