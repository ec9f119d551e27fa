"""The development chain's blocks: decoded extrinsics, deterministic timestamps, drand rounds, alpha prices
and EVM associations, read from the model and through `SimulatedChainClient`."""

from __future__ import annotations

import itertools

import pytest
from bittensor_wallet import Keypair

from app.chain.client import BlockInfo, ChainTimeout, ExtrinsicCallArg
from app.devchain import clock
from app.devchain.calls import ServeAxon, SetCommitment, SetWeights
from app.devchain.market import MAX_PRICE, MIN_PRICE, RAO
from app.devchain.model import SimulatedChain
from tests.devchain.test_model import in_next_block, make_client

ALICE = Keypair.create_from_uri("//Alice")


def args(extrinsic) -> dict[str, object]:
    return {arg.name: arg.value for arg in extrinsic.call.call_args}


def test_a_block_records_its_extrinsics_decoded_after_the_timestamp_inherent() -> None:
    chain = SimulatedChain(neurons=16)
    chain.register(1, ALICE.ss58_address, validator=True)
    weights = chain.submit(
        ALICE.ss58_address, SetWeights(netuid=1, uids=(0, 1), values=(65535, 100), version_key=7)
    )
    axon = chain.submit(ALICE.ss58_address, ServeAxon(netuid=1, ip="192.0.2.5", port=8091))
    note = chain.submit(ALICE.ss58_address, SetCommitment(netuid=1, data=b"hi"))
    record = chain.produce_block()

    inherent = chain.extrinsic(record.number, 0)
    assert inherent is not None and inherent.address is None
    assert (inherent.call.call_module, inherent.call.call_function) == ("Timestamp", "set")
    assert inherent.call.call_args == [
        ExtrinsicCallArg(name="now", type="Moment", value=clock.timestamp_ms(record.number))
    ]

    first, second, third = (chain.extrinsic(record.number, i) for i in (1, 2, 3))
    assert first is not None and second is not None and third is not None
    assert [x.extrinsic_hash for x in (first, second, third)] == [weights, axon, note]
    assert {x.address for x in (first, second, third)} == {ALICE.ss58_address}
    assert (first.call.call_module, first.call.call_function) == ("SubtensorModule", "set_weights")
    assert args(first) == {"netuid": 1, "dests": [0, 1], "weights": [65535, 100], "version_key": 7}
    assert [a.type for a in first.call.call_args] == ["NetUid", "Vec<u16>", "Vec<u16>", "u64"]
    assert second.call.call_function == "serve_axon"
    assert args(second) == {
        "netuid": 1,
        "version": 0,
        "ip": 3221225989,  # 192.0.2.5
        "port": 8091,
        "ip_type": 4,
        "protocol": 4,
        "placeholder1": 0,
        "placeholder2": 0,
    }
    assert (third.call.call_module, third.call.call_function) == ("Commitments", "set_commitment")
    assert args(third) == {"netuid": 1, "info": {"fields": [{"Raw2": "0x6869"}]}}
    assert all(x.block_number == record.number and x.extrinsic_length > 100 for x in (first, second, third))
    assert [x.extrinsic_index for x in (first, second, third)] == [1, 2, 3]
    assert chain.extrinsic(record.number, 4) is None
    # The receipt's hash is the block's.
    assert chain.receipts[weights].block == record.info


def test_timestamps_advance_12_seconds_per_block_and_reproduce() -> None:
    chain = SimulatedChain(neurons=4)
    genesis = chain.head.number
    for _ in range(3):
        chain.produce_block()
    times = [chain.block_timestamp(n) for n in range(genesis, genesis + 4)]
    assert [b - a for a, b in itertools.pairwise(times)] == [12, 12, 12]
    assert times[0] == clock.GENESIS_TIME_MS // 1000 + genesis * 12
    assert SimulatedChain(neurons=4).block_timestamp() == times[0]
    # Four drand quicknet rounds (3 s) per 12 s block.
    assert chain.drand_round() - chain.drand_round(genesis) == 12


def test_alpha_prices_move_between_blocks_and_stay_bounded() -> None:
    chain = SimulatedChain(netuids=(1, 2, 3), neurons=4)
    seen = []
    for _ in range(50):
        prices = chain.alpha_prices()
        assert set(prices) == {0, 1, 2, 3} and prices[0] == RAO
        assert all(MIN_PRICE * RAO <= prices[n] <= MAX_PRICE * RAO for n in (1, 2, 3))
        seen.append(prices)
        chain.produce_block()
    assert len({p[1] for p in seen}) > 40
    assert seen[0][1] != seen[0][2]
    # Smooth: no jump above 2% of the range between consecutive blocks.
    assert max(abs(a[1] - b[1]) for a, b in itertools.pairwise(seen)) < 0.02 * MAX_PRICE * RAO
    assert SimulatedChain(netuids=(1, 2, 3), neurons=4, seed=1).alpha_prices() != seen[0]


def test_a_few_genesis_hotkeys_have_evm_addresses() -> None:
    chain = SimulatedChain(neurons=16, seed=5)
    associations = chain.evm_associations(1)
    hotkeys = {n.hotkey for n in chain.subnet(1).neurons}
    assert len(associations) == 3 and set(associations) <= hotkeys
    for hotkey, association in associations.items():
        assert association.hotkey == hotkey
        assert association.evm_address.startswith("0x") and len(association.evm_address) == 42
        assert association.evm_address == association.evm_address.lower()
        assert association.last_block_where_ownership_was_proven < chain.head.number
    assert SimulatedChain(neurons=16, seed=5).evm_associations(1) == associations


async def test_client_reads_blocks_at_older_heights_and_honours_the_delay_switch() -> None:
    chain, client = make_client()
    chain.register(1, ALICE.ss58_address, validator=True)
    old = await client.head()
    result = await in_next_block(client, client.set_weights(ALICE, 1, {0: 1.0}))
    assert result.block is not None
    extrinsic = await client.extrinsic(result.block, 1)
    assert extrinsic is not None and extrinsic.extrinsic_hash == result.extrinsic_hash
    assert extrinsic.address == ALICE.ss58_address
    assert await client.extrinsic(result.block, 2) is None
    assert await client.extrinsic(old, 1) is None
    assert await client.block_timestamp(result.block) - await client.block_timestamp(old) == 12
    assert (await client.alpha_prices(old)) == chain.alpha_prices(old)
    assert await client.drand_last_stored_round(old) == clock.drand_round(old.number)
    assert await client.evm_associations(1, old) == chain.evm_associations(1)
    client.delay, client.call_timeout = 1.0, 0.01
    with pytest.raises(ChainTimeout):
        await client.block_timestamp(BlockInfo(number=old.number, hash=old.hash))
