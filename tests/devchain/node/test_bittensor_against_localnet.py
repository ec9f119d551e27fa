"""The unmodified bittensor SDK against `pylon localnet`, beside the same reads through turbobt and Pylon's
turbobt adapter: two independent clients, one chain, each answer checked against the simulated state."""

from __future__ import annotations

import ipaddress
from typing import Any

import bittensor as bt
import turbobt

from app.devchain.node.codec import account_hex, ss58

from .conftest import NodeThread, Wallets

# What a client decodes from an absent `Owner` key: the metadata default, never a registered hotkey's owner.
ZERO_ACCOUNT = ss58(bytes(32))


def sdk(localnet: NodeThread) -> bt.Subtensor:
    # Pinned to the node: no public fallback or archive endpoint is ever dialled.
    return bt.Subtensor(localnet.url, fallback_endpoints=[], archive_endpoints=[])


def head_subnet(localnet: NodeThread) -> Any:
    return localnet.call(lambda node: node.chain.subnet(1))


async def test_block_uid_membership_and_owner(localnet: NodeThread, adapter, wallets: Wallets):
    hotkey = wallets.hotkey("validator")
    snapshot = head_subnet(localnet)
    neuron = snapshot.neurons[snapshot.uid_of(hotkey)]
    assert neuron.coldkey != ZERO_ACCOUNT
    async with sdk(localnet) as client:
        block = await client.block()
        assert block >= snapshot_block(localnet) - 1
        info = await client.block_info()  # chain_getHead
        assert info is not None and info.hash == localnet.call(lambda node: node.hash_of(info.number))
        assert await client.neurons.uid(hotkey, 1) == neuron.uid
        assert await client.neurons.netuids_for_hotkey(hotkey) == [1]
        assert await client.neurons.netuids_for_hotkey(wallets.hotkey("stranger")) == []
        assert await client.neurons.hotkey_owner(hotkey) == neuron.coldkey
        # An unowned hotkey reads as the default, as on subtensor itself (a value-query item).
        assert await client.neurons.hotkey_owner(wallets.hotkey("stranger")) == ZERO_ACCOUNT
        assert hotkey in await client.neurons.owned_hotkeys(neuron.coldkey)
    async with turbobt.Bittensor(localnet.url) as tb:
        storage = tb.subtensor.state
        assert await storage.getStorage("SubtensorModule.Owner", hotkey) == account_hex(neuron.coldkey)
        assert await storage.getStorage("SubtensorModule.IsNetworkMember", hotkey, 1) is True
        assert await tb.subtensor.subtensor_module.Uids.get(1, hotkey) == neuron.uid
    head = await adapter.head()
    assert head.number >= block
    assert {n.hotkey: n.uid for n in await adapter.neurons(1, head)}[hotkey] == neuron.uid


def snapshot_block(localnet: NodeThread) -> int:
    return localnet.call(lambda node: node.chain.head.number)


async def test_subnets_and_hyperparameters(localnet: NodeThread, adapter):
    # Values unlike the metadata defaults (100, 1024, 1000), so a default read as state cannot pass.
    params = localnet.call(
        lambda node: node.chain.set_hyperparams(
            1, weights_rate_limit=7, min_allowed_weights=3, max_weights_limit=40_000
        )
    )
    neurons = len(head_subnet(localnet).neurons)
    async with sdk(localnet) as client:
        info = await client.subnets.info(1)
        assert (info.netuid, info.tempo, info.neuron_count) == (1, params.tempo, neurons)
        assert info.burn.rao == params.min_burn
        listed = {s.netuid: s for s in await client.subnets.all()}
        assert listed[1].neuron_count == neurons
        assert await client.hyperparameters.weights_rate_limit(1) == 7
        assert await client.hyperparameters.min_allowed_weights(1) == 3
        assert await client.hyperparameters.max_weight_limit(1) == 40_000
        assert await client.subnets.commit_reveal_enabled(1) is params.commit_reveal_weights_enabled
    async with turbobt.Bittensor(localnet.url) as tb:
        storage = tb.subtensor.state
        assert await storage.getStorage("SubtensorModule.WeightsSetRateLimit", 1) == 7
        assert await storage.getStorage("SubtensorModule.SubnetworkN", 1) == neurons
        assert await tb.subtensor.subtensor_module.TotalNetworks.get() == 2  # root and subnet 1
    got = await adapter.hyperparams(1, await adapter.head())
    assert (got.weights_rate_limit, got.min_allowed_weights, got.max_weights_limit) == (7, 3, 40_000)
    assert len(await adapter.neurons(1, await adapter.head())) == neurons


async def test_serve_axon_reads_back_with_its_block_and_version(localnet: NodeThread, adapter, wallets):
    miner = wallets["miner"]
    async with sdk(localnet) as client:
        result = await client.execute(bt.ServeAxon(netuid=1, ip="1.2.3.4", port=8091, version=7), miner)
        assert result.success, result.message
        included = localnet.call(lambda node: node.number_of(result.block_hash))
        axon = await client.query(bt.storage.SubtensorModule.Axons, [1, wallets.hotkey("miner")])
        assert axon["block"] == included and axon["version"] == 7
        assert (axon["ip"], axon["port"]) == (int(ipaddress.ip_address("1.2.3.4")), 8091)
        # The lite neuron carries the same axon.
        mine = next(n for n in await client.neurons.neurons(1) if n.hotkey == wallets.hotkey("miner"))
        assert mine.raw["axon_info"]["block"] == included and mine.raw["axon_info"]["version"] == 7
    neurons = {n.hotkey: n for n in await adapter.neurons(1, await adapter.head())}
    served = neurons[wallets.hotkey("miner")].axon_info
    assert (served.ip, served.port) == ("1.2.3.4", 8091)


async def test_raw_set_weights_lands_and_the_rate_limit_refuses_a_second(
    localnet: NodeThread, adapter, wallets: Wallets
):
    validator = wallets["validator"]
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0, 1], weights=[100, 200], version_key=0
    )
    async with sdk(localnet) as client:
        first = await client.submit_call(call, validator, signer="hotkey")
        assert first.success, first.message
        uid = await client.neurons.uid(wallets.hotkey("validator"), 1)
        weights = await client.weights.weights(1)
        assert set(weights[uid]) == {0, 1} and weights[uid][1] > weights[uid][0]
        second = await client.submit_call(call, validator, signer="hotkey")
        assert not second.success and second.error is not None
        assert second.error.name == "SettingWeightsTooFast"
    stored = await adapter.weights(1, await adapter.head())
    assert stored[uid] == {0: 32768, 1: 65535}


async def test_timelocked_commit_whose_bytes_are_utf8_lands(localnet: NodeThread, adapter, wallets):
    # scalecodec hands such bytes back as text; the node used to refuse them as bad hex (-32602).
    localnet.call(lambda node: node.chain.set_hyperparams(1, commit_reveal_weights_enabled=True))
    call = bt.calls.SubtensorModule.commit_timelocked_mechanism_weights(
        netuid=1, mecid=0, commit=b"plain ascii bytes", reveal_round=123, commit_reveal_version=4
    )
    async with sdk(localnet) as client:
        result = await client.submit_call(call, wallets["miner"], signer="hotkey")
        assert result.success, result.message
    pending = await adapter.pending_commits(1, await adapter.head())
    assert [c.hotkey for c in pending] == [wallets.hotkey("miner")]


async def test_fee_estimate_is_the_fixed_fee(localnet: NodeThread, wallets: Wallets):
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0], weights=[1], version_key=0
    )
    async with sdk(localnet) as client:
        composed = await client.compose(call)
        weight = await client.estimate_weight(composed, address=wallets.hotkey("validator"))
    assert weight == {"ref_time": 0, "proof_size": 0}
