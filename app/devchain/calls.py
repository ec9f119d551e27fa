"""What a development-chain extrinsic carries, and how the chain refuses one.

The calls are the subtensor dispatchables the simulated subnet models; an `Extrinsic` is one queued for the
next block. `ChainModuleError` names a refusal as subtensor's `SubtensorModule` error does.
"""

from __future__ import annotations

import hashlib

import msgspec

from app.chain.client import Certificate


class ChainModuleError(Exception):
    """A dispatch error, named as subtensor's `SubtensorModule` error (what a JSON-RPC front reports)."""

    def __init__(self, name: str, message: str = "") -> None:
        self.name = name
        super().__init__(f"{name}: {message}" if message else name)


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


# The Commitments pallet's `Data::Raw0..Raw128`: no Raw field holds more.
MAX_RAW_COMMITMENT = 128


class SetCommitment(msgspec.Struct, frozen=True, kw_only=True, tag="set_commitment"):
    """`Commitments.set_commitment` with one field: `Raw<n>` bytes, or `TimelockEncrypted` when
    `reveal_round` is set (then `data` is the ciphertext)."""

    netuid: int
    data: bytes
    reveal_round: int | None = None
    # The plaintext rides along so the simulated drand reveal can publish it; None when only ciphertext is
    # known (a commitment submitted to the local node), which can then never be revealed.
    plaintext: str | None = None

    def __post_init__(self) -> None:
        if self.reveal_round is None and len(self.data) > MAX_RAW_COMMITMENT:
            raise ValueError(
                f"commitment data is {len(self.data)} bytes; a Raw field holds at most {MAX_RAW_COMMITMENT}"
            )


Call = SetWeights | CommitWeights | ServeAxon | SetCommitment


class Extrinsic(msgspec.Struct, frozen=True, kw_only=True):
    signer: str  # ss58 hotkey
    call: Call
    hash: str
    submitted_at: int  # head number when submitted


def digest(*parts: object) -> str:
    """A deterministic 32-byte hex hash of `parts` (block hashes, extrinsic hashes, commits)."""
    return "0x" + hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=32).hexdigest()
