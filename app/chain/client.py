"""The one interface Pylon talks to a chain through, and the data it speaks in.

Two implementations: `app.chain.turbobt.TurbobtChainClient` (finney, test, archive, any ws(s):// node) and
`app.devchain.client.SimulatedChainClient` (`PYLON_NETWORK=local`). Everything above this module (the
metagraph cache, the neurons and weights features, the CLI) depends on `ChainClient` only.

Units follow bittensor-pylon's wire shape: stakes and emission in TAO/alpha (floats, not rao), the
u16-proportion fields (rank, trust, incentive...) as floats in [0, 1].

Reads take an explicit `BlockInfo` (number and hash); `None` means "the head now", resolved once per call.
Signing operations take a bittensor_wallet `Wallet` (its hotkey signs) or a `Keypair` (it signs).
They return an `ExtrinsicResult` once the extrinsic is in a block, and raise `ExtrinsicFailed` with
subtensor's module error name (`SettingWeightsTooFast`, `HotKeyNotRegisteredInSubNet`...) when the
chain rejected it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Collection, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from bittensor_wallet import Keypair, Wallet

    Signer = Wallet | Keypair
else:
    Signer = Any

U16_MAX = 65535
# bittensor's default `version_key` (what turbobt sends when none is given).
DEFAULT_VERSION_KEY = 9_003_000


# ---------------------------------------------------------------------------------------------- models
class BlockInfo(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    hash: str


class AxonInfo(msgspec.Struct, frozen=True, kw_only=True):
    ip: str
    port: int
    protocol: int


class Stakes(msgspec.Struct, frozen=True, kw_only=True):
    """A hotkey's stake on the subnet: alpha, TAO, and total (alpha + weighted TAO), per subnet state."""

    alpha: float
    tao: float
    total: float


class Neuron(msgspec.Struct, frozen=True, kw_only=True):
    """One neuron, field for field as bittensor-pylon serves it."""

    uid: int
    coldkey: str
    hotkey: str
    active: bool
    axon_info: AxonInfo
    stake: float
    rank: float
    emission: float
    incentive: float
    consensus: float
    trust: float
    validator_trust: float
    dividends: float
    last_update: int
    validator_permit: bool
    pruning_score: int
    stakes: Stakes


class Metagraph(msgspec.Struct, frozen=True, kw_only=True):
    """The neurons of one subnet at one block, keyed by hotkey (bittensor-pylon's response body)."""

    block: BlockInfo
    neurons: dict[str, Neuron]


class SubnetHyperparams(msgspec.Struct, frozen=True, kw_only=True):
    """Subtensor's `SubnetHyperparams` runtime-API answer (what validators and the weights worker need)."""

    rho: int = 10
    kappa: int = 32767
    immunity_period: int = 5000
    min_allowed_weights: int = 1
    max_weights_limit: int = U16_MAX
    tempo: int = 360
    min_difficulty: int = 10_000_000
    max_difficulty: int = 2**64 - 1
    weights_version: int = 0
    weights_rate_limit: int = 100
    adjustment_interval: int = 360
    activity_cutoff: int = 5000
    registration_allowed: bool = True
    target_regs_per_interval: int = 1
    min_burn: int = 500_000
    max_burn: int = 100_000_000_000
    bonds_moving_avg: int = 900_000
    max_regs_per_block: int = 1
    serving_rate_limit: int = 50
    max_validators: int = 64
    adjustment_alpha: int = 0
    difficulty: int = 10_000_000
    commit_reveal_period: int = 1
    commit_reveal_weights_enabled: bool = False
    alpha_high: int = 58982
    alpha_low: int = 45875
    liquid_alpha_enabled: bool = False


class SubnetState(msgspec.Struct, frozen=True, kw_only=True):
    """Per-uid columns of subtensor's `SubnetState` (stakes in TAO/alpha units)."""

    netuid: int
    hotkeys: list[str]
    coldkeys: list[str]
    active: list[bool]
    validator_permit: list[bool]
    alpha_stake: list[float]
    tao_stake: list[float]
    total_stake: list[float]


class CertificateAlgorithm(IntEnum):
    ED25519 = 1


class Certificate(msgspec.Struct, frozen=True, kw_only=True):
    """A neuron's TLS certificate as the chain stores it: algorithm and public key (hex, no 0x)."""

    algorithm: int
    public_key: str


class CertificateKeypair(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly generated certificate with its private key (shown once, never stored by Pylon)."""

    algorithm: int
    public_key: str
    private_key: str


class Commitment(msgspec.Struct, frozen=True, kw_only=True):
    """A hotkey's commitment on a subnet (the Commitments pallet's `CommitmentOf`): raw bytes, or a
    timelock-encrypted payload that the chain reveals at `reveal_round` (drand)."""

    hotkey: str
    # The block the commitment was set in.
    block: int
    data: bytes
    kind: Literal["hex_data", "timelock_encrypted"] = "hex_data"
    reveal_round: int | None = None


class RevealedCommitment(msgspec.Struct, frozen=True, kw_only=True):
    """A timelocked commitment the chain has revealed (`RevealedCommitments`)."""

    hotkey: str
    reveal_block: int
    data: str


class ExtrinsicCallArg(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    type: str
    value: Any


class ExtrinsicCall(msgspec.Struct, frozen=True, kw_only=True):
    call_module: str
    call_function: str
    call_args: list[ExtrinsicCallArg]


class BlockExtrinsic(msgspec.Struct, frozen=True, kw_only=True):
    """One extrinsic of a block, decoded (bittensor-pylon's `Extrinsic` shape)."""

    block_number: int
    extrinsic_index: int
    extrinsic_hash: str
    extrinsic_length: int
    # The signer's ss58 address; None for inherents (timestamp.set).
    address: str | None
    call: ExtrinsicCall


class EvmAssociation(msgspec.Struct, frozen=True, kw_only=True):
    """A hotkey's associated EVM address (subtensor's `AssociatedEvmAddress`)."""

    hotkey: str
    evm_address: str
    last_block_where_ownership_was_proven: int


class ExtrinsicResult(msgspec.Struct, frozen=True, kw_only=True):
    """Where an extrinsic landed and how it went."""

    block: BlockInfo | None
    extrinsic_hash: str
    success: bool
    # Subtensor's module error name when `success` is False (e.g. "SettingWeightsTooFast").
    error_name: str | None = None
    # commit_weights and timelocked commitments: the round after which the chain reveals them.
    reveal_round: int | None = None


class WeightCommit(msgspec.Struct, frozen=True, kw_only=True):
    """A pending (not yet revealed) commit of weights."""

    hotkey: str
    commit_block: int
    reveal_round: int


# ------------------------------------------------------------------------------------------- errors
class ChainError(Exception):
    """Base of every error a ChainClient raises."""


class ChainUnavailable(ChainError):
    """The node could not be reached, dropped the connection, or did not answer in time."""


class ChainTimeout(ChainUnavailable):
    """A call or an extrinsic did not finish within its timeout."""


class BlockNotFound(ChainError):
    """The block does not exist (yet), or its state is no longer kept (pruned)."""

    def __init__(self, number: int | None, reason: str = "not found") -> None:
        self.number = number
        self.reason = reason
        super().__init__(f"block {number} {reason}")


class StatePruned(BlockNotFound):
    def __init__(self, number: int) -> None:
        super().__init__(number, "is pruned: its state is no longer kept by the node")


class UnknownNetuid(ChainError):
    def __init__(self, netuid: int) -> None:
        self.netuid = netuid
        super().__init__(f"subnet {netuid} does not exist")


class NotSupported(ChainError):
    """This chain client cannot answer this (said plainly rather than answered with a default)."""


class ExtrinsicFailed(ChainError):
    """The chain included the extrinsic and rejected it with a module error (subtensor's error name)."""

    def __init__(self, error_name: str, message: str = "", result: ExtrinsicResult | None = None) -> None:
        self.error_name = error_name
        self.result = result
        super().__init__(f"{error_name}: {message}" if message else error_name)


# ------------------------------------------------------------------------------------------ helpers
def hotkey_of(signer: Signer) -> Keypair:
    """The keypair that signs: a Wallet's hotkey, or the Keypair itself."""
    from bittensor_wallet import Keypair

    if isinstance(signer, Keypair):
        return signer
    hotkey: Keypair = signer.hotkey
    return hotkey


def float_to_u16(value: float) -> int:
    """Subtensor's u16 proportion (same rounding as turbobt)."""
    return round(max(0.0, min(1.0, value)) * U16_MAX)


def u16_to_float(value: int) -> float:
    return value / U16_MAX


def normalize_weights(weights: Mapping[int, float]) -> dict[int, int]:
    """Max-upscale to u16 the way bittensor clients send weights: the largest becomes 65535."""
    if not weights:
        return {}
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    top = max(weights.values())
    if not top:
        return {uid: 0 for uid in weights}
    return {uid: float_to_u16(weight / top) for uid, weight in weights.items()}


def new_certificate_keypair(algorithm: int = CertificateAlgorithm.ED25519) -> CertificateKeypair:
    """A fresh key pair for a neuron certificate (what turbobt's generate_certificate_keypair makes)."""
    from ecies.keys import PrivateKey

    curve = CertificateAlgorithm(algorithm).name.lower()
    private_key = PrivateKey(curve)  # type: ignore[arg-type]
    return CertificateKeypair(
        algorithm=int(algorithm),
        public_key=private_key.public_key.to_hex().removeprefix("0x"),
        private_key=private_key.to_hex().removeprefix("0x"),
    )


# ---------------------------------------------------------------------------------------- interface
class ChainClient(abc.ABC):
    """What Pylon needs from a chain. Implementations bound every call by their timeouts."""

    #: seconds between polls when `subscribe_heads` falls back to polling.
    poll_interval: float = 1.0

    # --- reads
    @abc.abstractmethod
    async def head(self) -> BlockInfo:
        """The latest (best finalized) block."""

    @abc.abstractmethod
    async def block(self, number: int) -> BlockInfo:
        """The block with this number; BlockNotFound for a future (or unknown) block."""

    @abc.abstractmethod
    async def neurons(self, netuid: int, block: BlockInfo | None = None) -> list[Neuron]:
        """Every neuron of the subnet at the block, by uid; UnknownNetuid if the subnet does not exist."""

    @abc.abstractmethod
    async def hyperparams(self, netuid: int, block: BlockInfo | None = None) -> SubnetHyperparams:
        """The subnet's hyperparameters at the block."""

    @abc.abstractmethod
    async def subnet_state(self, netuid: int, block: BlockInfo | None = None) -> SubnetState:
        """Per-uid stakes and flags at the block."""

    @abc.abstractmethod
    async def certificates(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Certificate]:
        """Certificates posted on the subnet, keyed by hotkey."""

    async def certificate(
        self, netuid: int, hotkey: str, block: BlockInfo | None = None
    ) -> Certificate | None:
        """One hotkey's certificate, or None."""
        return (await self.certificates(netuid, block)).get(hotkey)

    async def block_timestamp(self, block: BlockInfo | None = None) -> int:
        """The block's timestamp (`Timestamp.Now`), in unix seconds."""
        raise NotSupported("block timestamps")

    async def extrinsic(self, block: BlockInfo, index: int) -> BlockExtrinsic | None:
        """The block's extrinsic at `index`, decoded; None past the block's last extrinsic."""
        raise NotSupported("extrinsics")

    async def commitments(self, netuid: int, block: BlockInfo | None = None) -> dict[str, Commitment]:
        """Every commitment on the subnet at the block, keyed by hotkey."""
        raise NotSupported("commitments")

    async def commitment(self, netuid: int, hotkey: str, block: BlockInfo | None = None) -> Commitment | None:
        """One hotkey's commitment, or None."""
        return (await self.commitments(netuid, block)).get(hotkey)

    async def revealed_commitments(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, list[RevealedCommitment]]:
        """Timelocked commitments the chain has revealed, keyed by hotkey."""
        raise NotSupported("revealed commitments")

    async def alpha_prices(self, block: BlockInfo | None = None) -> dict[int, int]:
        """Every subnet's alpha price at the block, in rao of TAO per alpha, keyed by netuid."""
        raise NotSupported("alpha prices")

    async def evm_associations(
        self, netuid: int, block: BlockInfo | None = None
    ) -> dict[str, EvmAssociation]:
        """EVM addresses associated with the subnet's hotkeys, keyed by hotkey."""
        raise NotSupported("EVM associations")

    async def drand_last_stored_round(self, block: BlockInfo | None = None) -> int:
        """The last drand round the chain has stored (the Drand pallet's `LastStoredRound`)."""
        raise NotSupported("drand rounds")

    @abc.abstractmethod
    async def weights(self, netuid: int, block: BlockInfo | None = None) -> dict[int, dict[int, int]]:
        """Weights on chain: validator uid -> {uid: u16 weight (max-upscaled)}."""

    @abc.abstractmethod
    async def pending_commits(self, netuid: int, block: BlockInfo | None = None) -> list[WeightCommit]:
        """Committed weights not revealed yet."""

    # --- extrinsics
    @abc.abstractmethod
    async def set_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        """Set weights {uid: weight} (any non-negative scale, normalised to u16) for the signer's hotkey."""

    @abc.abstractmethod
    async def commit_weights(
        self,
        signer: Signer,
        netuid: int,
        weights: Mapping[int, float],
        version_key: int = DEFAULT_VERSION_KEY,
    ) -> ExtrinsicResult:
        """Commit weights for a later (timelocked) reveal; the result carries the reveal round."""

    async def set_commitment(self, signer: Signer, netuid: int, data: bytes) -> ExtrinsicResult:
        """Commit raw bytes for the signer's hotkey (`Commitments.set_commitment`, one `Raw<n>` field)."""
        raise NotSupported("setting commitments")

    async def set_timelocked_commitment(
        self, signer: Signer, netuid: int, data: str, blocks_until_reveal: int
    ) -> ExtrinsicResult:
        """Commit `data` timelock-encrypted to a drand round about `blocks_until_reveal` blocks ahead;
        the result carries the reveal round."""
        raise NotSupported("timelocked commitments")

    @abc.abstractmethod
    async def serve_axon(
        self,
        signer: Signer,
        netuid: int,
        ip: str,
        port: int,
        protocol: int = 4,
        certificate: Certificate | None = None,
    ) -> ExtrinsicResult:
        """Post the hotkey's axon address (and a TLS certificate when given)."""

    async def generate_certificate(
        self, signer: Signer, netuid: int, algorithm: int = CertificateAlgorithm.ED25519
    ) -> CertificateKeypair:
        """Make a new certificate key pair and post its public key with the neuron's current axon."""
        hotkey = hotkey_of(signer).ss58_address
        neuron = next((n for n in await self.neurons(netuid) if n.hotkey == hotkey), None)
        if neuron is None:
            raise ExtrinsicFailed(
                "HotKeyNotRegisteredInSubNet", f"{hotkey} is not registered on subnet {netuid}"
            )
        keypair = new_certificate_keypair(algorithm)
        await self.serve_axon(
            signer,
            netuid,
            neuron.axon_info.ip,
            neuron.axon_info.port,
            neuron.axon_info.protocol,
            certificate=Certificate(algorithm=keypair.algorithm, public_key=keypair.public_key),
        )
        return keypair

    # --- heads
    async def subscribe_heads(self) -> AsyncIterator[BlockInfo]:
        """New heads as they come. This default polls `head()`; clients with subscriptions override it.

        Errors propagate to the caller, which decides how to back off and resubscribe.
        """
        last: int | None = None
        while True:
            head = await self.head()
            if last is None or head.number > last:
                last = head.number
                yield head
            await asyncio.sleep(self.poll_interval)

    # --- lifecycle
    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work on the running loop (the development chain's block producer).

        Idempotent; the default has nothing to start.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and stop background tasks."""

    # --- development chains
    async def register_dev_validator(
        self, hotkey: str, netuids: Collection[int] | None = None
    ) -> dict[int, int]:
        """On a development chain, register `hotkey` with a validator permit on each subnet in `netuids`
        (None: every subnet) so that a new identity's first weights land; returns {netuid: uid}.

        A real chain registers nothing and returns {}: registration costs TAO and is the operator's call.
        """
        return {}
