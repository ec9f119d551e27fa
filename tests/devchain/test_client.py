"""The development chain's `ChainClient`: the block producer, the test switches, settings, registration."""

from __future__ import annotations

import asyncio

import pytest

from app.chain.client import ChainUnavailable
from app.devchain.client import SimulatedChainClient
from app.settings import load_settings
from tests.devchain.test_model import make_client


async def test_unreachable_switch_and_producer_task() -> None:
    chain, client = make_client()
    client.block_time = 0.01
    client.start()
    try:
        start = chain.head.number
        heads = client.subscribe_heads()
        first = await asyncio.wait_for(heads.__anext__(), 5)
        second = await asyncio.wait_for(heads.__anext__(), 5)
        assert second.number > first.number >= start
        client.unreachable = True
        with pytest.raises(ChainUnavailable):
            await client.head()
        with pytest.raises(ChainUnavailable):
            await asyncio.wait_for(heads.__anext__(), 5)
        client.unreachable = False
        assert (await client.head()).number > start
    finally:
        await client.close()


def test_from_settings_reads_the_local_section() -> None:
    settings = load_settings(
        {
            "PYLON_LOCAL_NETUIDS": "1,4",
            "PYLON_LOCAL_NEURONS": "8",
            "PYLON_LOCAL_SEED": "3",
            "PYLON_LOCAL_BLOCK_TIME": "0.5",
            "PYLON_LOCAL_TEMPO": "20",
            "PYLON_LOCAL_WEIGHTS_RATE_LIMIT": "7",
            "PYLON_LOCAL_COMMIT_REVEAL": "true",
            "PYLON_LOCAL_COMMITMENT_RATE_LIMIT": "4",
            "PYLON_LOCAL_UNREACHABLE": "true",
            "PYLON_CALL_TIMEOUT": "3",
        }
    )
    client = SimulatedChainClient.from_settings(settings)
    assert client.chain.netuids == [1, 4] and client.chain.seed == 3
    assert len(client.chain.subnet(4).neurons) == 8
    params = client.chain.subnet(1).hyperparams
    assert (params.tempo, params.weights_rate_limit, params.commit_reveal_weights_enabled) == (20, 7, True)
    assert client.block_time == 0.5 and client.call_timeout == 3
    assert client.chain.commitment_rate_limit == 4
    assert client.unreachable


async def test_register_dev_validator_grants_a_permit_on_the_chosen_subnets() -> None:
    chain, client = make_client(netuids=(1, 2))
    hotkey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    uids = await client.register_dev_validator(hotkey, netuids={2})
    assert list(uids) == [2]
    assert chain.subnet(2).neurons[uids[2]].validator_permit
    assert chain.subnet(1).uid_of(hotkey) is None
    assert set(await client.register_dev_validator(hotkey)) == {1, 2}
