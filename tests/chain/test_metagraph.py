"""The metagraph cache: one chain fetch per block, stale serving, recovery, LRU, lookups, readiness."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from app.chain.client import BlockNotFound, ChainUnavailable, Metagraph
from app.chain.metagraph import MetagraphCache
from app.devchain.client import SimulatedChainClient
from app.devchain.model import SimulatedChain


def setup(**cache_options) -> tuple[SimulatedChainClient, MetagraphCache]:
    client = SimulatedChainClient(SimulatedChain(neurons=32), block_time=3600)
    options = {"netuids": [1], "lru_size": 3, "stale_after": 60.0, "backoff": (0.01, 0.05), **cache_options}
    return client, MetagraphCache(client, **options)


async def test_one_chain_fetch_per_block_however_many_requests() -> None:
    client, cache = setup()
    cache.start()
    try:
        first = await asyncio.wait_for(cache.wait_for_head(0), 5)
        results = await asyncio.gather(*(cache.latest(1) for _ in range(200)))
        assert {r.block.number for r in results} == {first.number}
        assert client.calls["neurons"] == 1
        for _ in range(3):
            head = await client.produce_block()
            await asyncio.wait_for(cache.wait_for_head(head.number - 1), 5)
            for _ in range(50):
                assert (await cache.latest(1)).block == head
        assert client.calls["neurons"] == 4
        body = msgspec.json.decode((await cache.latest(1)).body, type=Metagraph)
        assert body.block == head and len(body.neurons) == 32
    finally:
        await cache.close()


async def test_cold_concurrent_requests_share_one_fetch() -> None:
    client, cache = setup(netuids=[])
    client.delay = 0.05
    results = await asyncio.gather(*(cache.latest(1) for _ in range(20)))
    assert len({id(r) for r in results}) == 1
    assert client.calls["neurons"] == 1


async def test_stale_serving_when_the_chain_is_down_then_recovery() -> None:
    client, cache = setup(stale_after=0.2)
    cache.start()
    try:
        await asyncio.wait_for(cache.wait_for_head(0), 5)
        warm = await cache.latest(1)
        assert (await cache.ready_check()).status == "ok"
        client.unreachable = True
        await client.produce_block()
        await asyncio.sleep(0.3)
        served = await cache.latest(1)
        assert served is warm
        assert cache.is_stale()
        check = await cache.ready_check()
        assert check.status == "degraded" and check.data["head_age_seconds"] >= 0.2
        assert "unreachable" in check.data["error"]
        client.unreachable = False
        head = await client.produce_block()
        await asyncio.wait_for(cache.wait_for_head(warm.block.number), 5)
        assert (await cache.latest(1)).block == head
        assert not cache.is_stale()
        assert (await cache.ready_check()).status == "ok"
    finally:
        await cache.close()


async def test_cold_cache_with_chain_down_raises_and_ready_is_down() -> None:
    client, cache = setup(netuids=[])
    client.unreachable = True
    with pytest.raises(ChainUnavailable):
        await cache.latest(1)
    assert (await cache.ready_check()).status == "down"


async def test_older_blocks_sit_in_a_bounded_lru() -> None:
    client, cache = setup()
    start = (await cache.latest(1)).block.number
    for _ in range(6):
        await client.produce_block()
    for number in range(start + 1, start + 6):
        assert (await cache.at_block(1, number)).block.number == number
    calls = client.calls["neurons"]
    await cache.at_block(1, start + 5)
    await cache.at_block(1, start)  # the latest metagraph answers its own block
    assert client.calls["neurons"] == calls
    await cache.at_block(1, start + 1)  # evicted (lru_size=3): fetched again
    assert client.calls["neurons"] == calls + 1
    with pytest.raises(BlockNotFound):
        await cache.at_block(1, start + 100)


async def test_lookup_of_a_hotkey_at_the_latest_block() -> None:
    _client, cache = setup()
    assert cache.lookup(1, "anything") is None
    latest = await cache.latest(1)
    validator = next(n for n in latest.neurons.values() if n.validator_permit)
    info = cache.lookup(1, validator.hotkey)
    assert info is not None
    assert (info.uid, info.validator_permit, info.stake, info.block) == (
        validator.uid,
        True,
        validator.stake,
        latest.block.number,
    )
    assert cache.lookup(1, "5NotRegistered") is None
