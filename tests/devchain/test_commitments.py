"""The development chain's Commitments pallet: who may commit, the rate limit, Raw sizes, timelocked reveals.

Model tests drive `SimulatedChain` directly (submit, produce, read); the client tests go through
`SimulatedChainClient`, what Pylon calls."""

from __future__ import annotations

import pytest
from bittensor_wallet import Keypair

from app.chain.client import ChainUnavailable, ExtrinsicFailed
from app.devchain.calls import SetCommitment
from app.devchain.model import SimulatedChain
from tests.devchain.test_model import in_next_block, make_client

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


def commit(chain: SimulatedChain, signer: str, call: SetCommitment) -> tuple[int, str | None]:
    """Submit, produce the block; (block number, error name or None)."""
    extrinsic_hash = chain.submit(signer, call)
    record = chain.produce_block()
    return record.number, chain.receipts[extrinsic_hash].error_name


def test_a_commitment_reads_back_from_its_block_on_not_before() -> None:
    chain = SimulatedChain(neurons=16)
    chain.register(1, ALICE.ss58_address)
    before = chain.head.number
    number, error = commit(chain, ALICE.ss58_address, SetCommitment(netuid=1, data=b"hello"))
    assert error is None
    chain.produce_block()
    stored = chain.commitments(1)[ALICE.ss58_address]
    assert (stored.block, stored.data, stored.kind, stored.reveal_round) == (
        number,
        b"hello",
        "hex_data",
        None,
    )
    assert chain.commitments(1, number) == chain.commitments(1)
    assert ALICE.ss58_address not in chain.commitments(1, before)


def test_rate_limit_refuses_a_second_commitment_until_it_has_passed() -> None:
    chain = SimulatedChain(neurons=16, commitment_rate_limit=3)
    chain.register(1, ALICE.ss58_address)
    first, error = commit(chain, ALICE.ss58_address, SetCommitment(netuid=1, data=b"one"))
    assert error is None
    _, error = commit(chain, ALICE.ss58_address, SetCommitment(netuid=1, data=b"two"))
    assert error == "CommitmentSetRateLimitExceeded"
    assert chain.commitments(1)[ALICE.ss58_address].data == b"one"
    chain.produce_block()
    third, error = commit(chain, ALICE.ss58_address, SetCommitment(netuid=1, data=b"three"))
    assert (third - first, error) == (3, None)
    assert chain.commitments(1)[ALICE.ss58_address].data == b"three"


def test_only_a_registered_hotkey_commits_and_raw_fields_hold_128_bytes() -> None:
    chain = SimulatedChain(neurons=16)
    _, error = commit(chain, BOB.ss58_address, SetCommitment(netuid=1, data=b"x"))
    assert error == "AccountNotAllowedCommit"
    _, error = commit(chain, BOB.ss58_address, SetCommitment(netuid=42, data=b"x"))
    assert error == "AccountNotAllowedCommit"
    assert chain.commitments(1) == {}
    SetCommitment(netuid=1, data=b"x" * 128)
    with pytest.raises(ValueError, match="at most 128"):
        SetCommitment(netuid=1, data=b"x" * 129)


def test_a_timelocked_commitment_is_revealed_once_the_drand_round_passes() -> None:
    chain = SimulatedChain(neurons=16)
    chain.register(1, ALICE.ss58_address)
    reveal_round = chain.timelock_round(3)
    call = SetCommitment(netuid=1, data=b"\xffcipher", reveal_round=reveal_round, plaintext="secret")
    number, error = commit(chain, ALICE.ss58_address, call)
    assert error is None
    stored = chain.commitments(1)[ALICE.ss58_address]
    assert (stored.kind, stored.reveal_round, stored.data) == (
        "timelock_encrypted",
        reveal_round,
        b"\xffcipher",
    )
    assert chain.revealed_commitments(1) == {}
    while chain.drand_round() < reveal_round:
        chain.produce_block()
        assert chain.head.number <= number + 3
    revealed = chain.revealed_commitments(1)[ALICE.ss58_address]
    assert [(r.data, r.reveal_block) for r in revealed] == [("secret", chain.head.number)]
    # The revealed commitment leaves CommitmentOf, as subtensor's reveal removes it.
    assert ALICE.ss58_address not in chain.commitments(1)
    assert chain.revealed_commitments(1, number) == {}


async def test_client_sets_and_reads_commitments() -> None:
    chain, client = make_client(commitment_rate_limit=2)
    chain.register(1, ALICE.ss58_address)
    result = await in_next_block(client, client.set_commitment(ALICE, 1, b"\x00\x01"))
    assert result.success and result.block is not None
    assert (await client.commitment(1, ALICE.ss58_address)).data == b"\x00\x01"  # type: ignore[union-attr]
    with pytest.raises(ExtrinsicFailed) as caught:
        await in_next_block(client, client.set_commitment(ALICE, 1, b"again"))
    assert caught.value.error_name == "CommitmentSetRateLimitExceeded"
    with pytest.raises(ValueError, match="at most 128"):
        await client.set_commitment(ALICE, 1, b"x" * 129)
    with pytest.raises(ExtrinsicFailed, match="AccountNotAllowedCommit"):
        await in_next_block(client, client.set_commitment(BOB, 1, b"x"))
    client.unreachable = True
    with pytest.raises(ChainUnavailable):
        await client.commitments(1)


async def test_client_timelocked_commitment_carries_its_reveal_round_and_reveals() -> None:
    chain, client = make_client()
    chain.register(1, ALICE.ss58_address)
    result = await in_next_block(client, client.set_timelocked_commitment(ALICE, 1, "plain", 2))
    assert result.reveal_round is not None
    pending = await client.commitment(1, ALICE.ss58_address)
    assert pending is not None and pending.kind == "timelock_encrypted"
    assert pending.reveal_round == result.reveal_round and b"plain" not in pending.data
    for _ in range(3):
        await client.produce_block()
    revealed = await client.revealed_commitments(1)
    assert [r.data for r in revealed[ALICE.ss58_address]] == ["plain"]
    assert await client.drand_last_stored_round() >= result.reveal_round
