"""bittensor-pylon's wire shapes (`pylon_client`'s v1 and `_unstable` responses and bodies), as msgspec
Structs. Neurons, certificates and blocks reuse the chain layer's structs: they already have its shape."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from app.chain.client import BlockExtrinsic, BlockInfo, EvmAssociation, Neuron

HexData = Annotated[str, msgspec.Meta(pattern=r"^(0x)?([0-9a-fA-F]{2})+$", max_length=2 + 2 * 128)]


class IdentitiesResponse(msgspec.Struct, kw_only=True):
    """`GET /api/v1/identities`: each identity's name and the subnet it works on."""

    identities: dict[str, int]


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """bittensor-pylon 1.x's identity login body."""

    token: str


class LoginResponse(msgspec.Struct, kw_only=True):
    netuid: int
    identity_name: str


class BlockInfoResponse(msgspec.Struct, kw_only=True):
    number: int
    hash: str
    # Unix seconds.
    timestamp: int


class ValidatorsResponse(msgspec.Struct, kw_only=True):
    """Validator-permit holders, highest total stake first."""

    block: BlockInfo
    validators: list[Neuron]


class CommitmentV1(msgspec.Struct, kw_only=True):
    """v1's one commitment: its block, hotkey and hex data, beside the block it was read at."""

    block: BlockInfo
    commitment_block_number: int
    hotkey: str
    commitment: str


class CommitmentsV1(msgspec.Struct, kw_only=True):
    """v1's commitments: hex data by hotkey (timelock-encrypted ones are not listed)."""

    block: BlockInfo
    commitments: dict[str, str]


class HexCommitment(msgspec.Struct, kw_only=True, tag_field="kind", tag="hex_data"):
    commitment_block_number: int
    hotkey: str
    commitment: str


class TimelockCommitment(msgspec.Struct, kw_only=True, tag_field="kind", tag="timelock_encrypted"):
    commitment_block_number: int
    hotkey: str
    commitment: str
    reveal_round: int


CommitmentVariant = HexCommitment | TimelockCommitment


class CommitmentUnstable(msgspec.Struct, kw_only=True):
    commitment: CommitmentVariant
    block: BlockInfo


class CommitmentsUnstable(msgspec.Struct, kw_only=True):
    block: BlockInfo
    commitments: dict[str, CommitmentVariant]


class RevealedCommitmentView(msgspec.Struct, kw_only=True):
    reveal_block_number: int
    hotkey: str
    commitment: str


class RevealedCommitmentsOfHotkey(msgspec.Struct, kw_only=True):
    commitments: list[RevealedCommitmentView]
    block: BlockInfo


class RevealedCommitments(msgspec.Struct, kw_only=True):
    block: BlockInfo
    commitments: dict[str, list[RevealedCommitmentView]]


class SetCommitmentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`{"commitment": "0x..."}`: at most 128 bytes of hex (the Commitments pallet's largest Raw field)."""

    commitment: HexData


class SetRevealedCommitmentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    commitment: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    blocks_until_reveal: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class RevealRoundResponse(msgspec.Struct, kw_only=True):
    reveal_round: int


class DetailResponse(msgspec.Struct, kw_only=True):
    detail: str


class PriceEntry(msgspec.Struct, kw_only=True):
    # Rao of TAO per alpha.
    value: int


class PricesResponse(msgspec.Struct, kw_only=True):
    block: BlockInfo
    prices: dict[int, PriceEntry]


class PriceResponse(msgspec.Struct, kw_only=True):
    block: BlockInfo
    netuid: int
    price: PriceEntry


class EvmAssociationsResponse(msgspec.Struct, kw_only=True):
    block: BlockInfo
    evm_associations: dict[str, EvmAssociation]


class WeightsStatusResponse(msgspec.Struct, kw_only=True):
    """Whether the identity's weights reached the chain in the epoch containing the block."""

    weights_submitted: bool


class DrandRoundResponse(msgspec.Struct, kw_only=True):
    last_stored_round: int


ExtrinsicResponse = BlockExtrinsic
Version = Literal["v1", "_unstable"]
