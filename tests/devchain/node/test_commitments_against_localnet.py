"""Commitments, block timestamps, extrinsics, prices, EVM associations and drand rounds: the turbobt adapter
(unmodified turbobt underneath) against `pylon localnet`, compared with the simulated chain's own answers."""

from __future__ import annotations

import pytest
import turbobt

from app.chain.client import ExtrinsicFailed

from .conftest import NodeThread, Wallets
from .test_turbobt_against_localnet import wait_blocks


async def test_set_a_commitment_and_read_it_back(localnet: NodeThread, adapter, wallets: Wallets):
    miner = wallets.hotkey("miner")
    before = await adapter.head()
    result = await adapter.set_commitment(wallets["miner"], 1, b"\x00pylon commitment")
    assert result.success and result.extrinsic_hash.startswith("0x")
    head = await adapter.head()
    stored = localnet.call(lambda node: node.chain.commitments(1, head.number))[miner]
    commitment = await adapter.commitment(1, miner, head)
    assert commitment == stored
    assert commitment is not None and commitment.data == b"\x00pylon commitment"
    assert commitment.kind == "hex_data" and before.number < commitment.block <= head.number
    assert (await adapter.commitments(1, head)) == {miner: stored}
    assert await adapter.commitment(1, miner, before) is None

    # The including block holds the timestamp inherent, then the signed call as the chain decodes it.
    block = await adapter.block(commitment.block)
    inherent = await adapter.extrinsic(block, 0)
    assert inherent is not None and inherent.address is None
    assert (inherent.call.call_module, inherent.call.call_function) == ("Timestamp", "set")
    signed = await adapter.extrinsic(block, 1)
    assert signed is not None and signed.extrinsic_hash == result.extrinsic_hash
    assert signed.address == miner
    assert (signed.call.call_module, signed.call.call_function) == ("Commitments", "set_commitment")
    assert {a.name: a.value for a in signed.call.call_args} == {
        "netuid": 1,
        "info": {"fields": [{"Raw17": "0x" + b"\x00pylon commitment".hex()}]},
    }
    assert await adapter.extrinsic(block, 2) is None

    # Within the rate limit: runtime 318's error for it is SpaceLimitExceeded (it has no RateLimit error).
    with pytest.raises(ExtrinsicFailed) as caught:
        await adapter.set_commitment(wallets["miner"], 1, b"again")
    assert caught.value.error_name == "SpaceLimitExceeded"


async def test_commitment_refusals(localnet: NodeThread, adapter, wallets: Wallets):
    with pytest.raises(ExtrinsicFailed) as caught:
        await adapter.set_commitment(wallets["stranger"], 1, b"x")
    assert caught.value.error_name == "AccountNotAllowedCommit"
    with pytest.raises(ValueError, match="at most 128"):
        await adapter.set_commitment(wallets["miner"], 1, b"x" * 129)


async def test_timelocked_commitment_is_stored_with_its_round(
    localnet: NodeThread, adapter, wallets: Wallets
):
    validator = wallets.hotkey("validator")
    result = await adapter.set_timelocked_commitment(wallets["validator"], 1, "sealed", 10)
    assert result.reveal_round is not None
    commitment = await adapter.commitment(1, validator)
    assert commitment is not None and commitment.kind == "timelock_encrypted"
    assert commitment.reveal_round == result.reveal_round and b"sealed" not in commitment.data
    # Offline there is no drand signature to decrypt with: nothing is ever revealed.
    assert await adapter.revealed_commitments(1) == {}


async def test_timestamps_prices_evm_and_drand_agree_with_the_model(localnet: NodeThread, adapter):
    head = await wait_blocks(adapter, 1)
    model = localnet.call(lambda node: node.chain)
    assert await adapter.block_timestamp(head) == localnet.call(lambda node: node.chain.block_timestamp(head))
    previous = await adapter.block(head.number - 1)
    assert await adapter.block_timestamp(head) - await adapter.block_timestamp(previous) == 12
    async with turbobt.Bittensor(localnet.url) as bt:
        block = await bt.block(head.number).get()
        assert int((await block.get_timestamp()).timestamp()) == await adapter.block_timestamp(head)
    assert await adapter.alpha_prices(head) == localnet.call(lambda node: node.chain.alpha_prices(head))
    assert (await adapter.alpha_prices(head))[0] == 1_000_000_000
    evm = await adapter.evm_associations(1, head)
    assert evm == localnet.call(lambda node: node.chain.evm_associations(1, head)) and evm
    assert await adapter.drand_last_stored_round(head) == model.drand_round(head.number)
