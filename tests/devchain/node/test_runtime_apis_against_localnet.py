"""The runtime APIs the bittensor SDK calls (full neurons, the metagraph, stake positions), read through the
unmodified SDK and through turbobt against one `pylon localnet` node, each answer checked field by field
against the simulated subnet's state (not against fixtures)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import bittensor as bt
import pytest
import turbobt

from app.chain.client import SubnetHyperparams, float_to_u16
from app.devchain.epoch import epoch_due, last_epoch_block
from app.devchain.node.codec import Runtime, account_hex
from app.devchain.node.node import build_node
from app.devchain.node.runtime_api import rao
from app.devchain.node.storage import EMPTY_ITEMS

from .conftest import NodeThread, Wallets

# A tempo short enough that epochs run while the module's tests do, so `last_step` moves.
TEMPO = 9


@pytest.fixture(scope="module")
def localnet(runtime: Runtime, wallets: Wallets) -> Iterator[NodeThread]:
    # One node for the module: every test reads it, none changes what another checks.
    node = build_node(
        runtime,
        netuids=[1, 3],
        neurons=12,
        seed=11,
        block_time=0.5,
        register=[wallets.hotkey("miner")],
        validators=[wallets.hotkey("validator")],
        hyperparams=SubnetHyperparams(tempo=TEMPO, weights_rate_limit=0, min_allowed_weights=2),
    )
    thread = NodeThread(node).start()
    try:
        yield thread
    finally:
        thread.stop()


def sdk(localnet: NodeThread) -> bt.Subtensor:
    return bt.Subtensor(localnet.url, fallback_endpoints=[], archive_endpoints=[])


def subnet_at(localnet: NodeThread, netuid: int, number: int) -> Any:
    return localnet.call(lambda node: node.chain.subnet(netuid, number))


async def set_some_weights(localnet: NodeThread, wallets: Wallets) -> int:
    """The validator's weights on subnet 1, through the SDK; returns the block they landed in."""
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0, 2, 5], weights=[10, 20, 40], version_key=0
    )
    async with sdk(localnet) as client:
        result = await client.submit_call(call, wallets["validator"], signer="hotkey")
    assert result.success, result.message
    return int(localnet.call(lambda node: node.number_of(result.block_hash)))


async def test_full_neurons_carry_weights_and_the_lite_fields(localnet: NodeThread, wallets: Wallets):
    landed = await set_some_weights(localnet, wallets)
    async with sdk(localnet) as client:
        block = await client.block()
        head = await client.block_info(block)
        full = await client.neurons.neurons(1, lite=False, block=block)
        lite = await client.neurons.neurons(1, block=block)
    assert block >= landed
    snapshot = subnet_at(localnet, 1, block)
    assert [n.uid for n in full] == [n.uid for n in snapshot.neurons]
    validator_uid = snapshot.uid_of(wallets.hotkey("validator"))
    for got, want, light in zip(full, snapshot.neurons, lite, strict=True):
        assert (got.hotkey, got.coldkey) == (want.hotkey, want.coldkey)
        assert (got.active, got.validator_permit, got.last_update) == (
            want.active,
            want.validator_permit,
            want.last_update,
        )
        assert got.total_stake.rao == rao(want.stakes.alpha)
        assert got.raw["rank"] == float_to_u16(want.rank)
        assert got.raw["bonds"] == []
        # The full record is the lite one plus weights and bonds.
        assert {k: v for k, v in got.raw.items() if k not in ("weights", "bonds")} == light.raw
        expected = [list(pair) for pair in snapshot.weights.get(want.uid, ())]
        assert [list(pair) for pair in got.raw["weights"]] == expected
    mine = {uid: w for uid, w in full[validator_uid].raw["weights"]}
    assert set(mine) == {0, 2, 5} and mine[5] == 65535
    # An unknown subnet answers an empty list, as subtensor does.
    async with sdk(localnet) as client:
        assert await client.neurons.neurons(2, lite=False) == []
    # turbobt reads the same neuron through `get_neuron`.
    async with turbobt.Bittensor(localnet.url) as tb:
        neuron = await tb.subnet(1).neuron(uid=validator_uid).get(block_hash=head.hash)
    assert neuron is not None and neuron.hotkey == wallets.hotkey("validator")


async def test_metagraph_is_the_subnet_state_at_its_block(localnet: NodeThread, wallets: Wallets):
    async with sdk(localnet) as client:
        block = await client.block()
        graph = await client.subnets.metagraph(1, block=block)
        raw = await (await client.at(block)).read("metagraph", netuid=1)
        assert await client.subnets.metagraph(2, block=block) is None
    snapshot = subnet_at(localnet, 1, block)
    params = snapshot.hyperparams
    assert graph is not None and graph.block == block and graph.netuid == 1
    assert graph.tempo == TEMPO and len(graph) == len(snapshot.neurons)
    assert graph.num_uids == graph.max_uids == len(snapshot.neurons)
    assert epoch_due(1, TEMPO, graph.last_step) and graph.last_step <= block
    assert graph.last_step == last_epoch_block(1, TEMPO, block)
    assert graph.blocks_since_last_step == block - graph.last_step < TEMPO + 1
    # Hyperparameters: the node's, not the metadata's defaults.
    assert raw["min_allowed_weights"] == 2 and raw["weights_rate_limit"] == 0
    assert (raw["tempo"], raw["burn"], raw["min_burn"]) == (TEMPO, params.min_burn, params.min_burn)
    assert raw["commit_reveal_weights_enabled"] is params.commit_reveal_weights_enabled
    # Unmodelled subnet facts read as subtensor's unset values: no price is derived from them.
    assert graph.price is None and graph.name == "" and graph.identity is None
    for got, want in zip(graph.neurons, snapshot.neurons, strict=True):
        assert (got.uid, got.hotkey, got.coldkey) == (want.uid, want.hotkey, want.coldkey)
        assert got.validator_permit is want.validator_permit and got.active is want.active
        assert got.alpha_stake.rao == rao(want.stakes.alpha)
        assert got.total_stake.rao == rao(want.stakes.total)
        assert got.emission.rao == rao(want.emission)
        assert round(got.incentive * 65535) == float_to_u16(want.incentive)
        assert got.last_update == want.last_update
    # turbobt's subnet state answers the same columns at the same block.
    async with turbobt.Bittensor(localnet.url) as tb:
        head = await tb.subtensor.chain.getBlockHash(block)
        state = await tb.subtensor.subnet_info.get_subnet_state(1, block_hash=head)
    assert [account_hex(h) for h in graph.hotkeys] == [account_hex(h) for h in state["hotkeys"]]


async def test_stake_positions_of_a_coldkey(localnet: NodeThread, wallets: Wallets):
    hotkey = wallets.hotkey("validator")
    stranger = str(wallets["stranger"].coldkeypub.ss58_address)
    async with sdk(localnet) as client:
        block = await client.block()
        first = subnet_at(localnet, 1, block)
        # The model's owner of the registered validator hotkey (the CLI registers hotkeys as their own owner).
        coldkey = first.neurons[first.uid_of(hotkey)].coldkey
        positions = await client.staking.stake_for_coldkey(coldkey, block=block)
        both = await client.staking.stake_for_coldkeys([coldkey, stranger], block=block)
        one = await client.staking.stake(coldkey, hotkey, 3, block=block)
        none = await client.staking.stake(stranger, hotkey, 3, block=block)
    subnets = {netuid: subnet_at(localnet, netuid, block) for netuid in (1, 3)}
    expected = [
        (netuid, n.hotkey, rao(n.stakes.alpha))
        for netuid, snap in sorted(subnets.items())
        for n in snap.neurons
        if n.coldkey == coldkey
    ]
    # That coldkey owns the registered hotkey on both subnets.
    assert [(p.netuid, p.hotkey, p.stake.rao) for p in positions] == expected
    assert {netuid for netuid, *_ in expected} == {1, 3}
    assert all(p.is_registered for p in positions)
    assert [(p.netuid, p.stake.rao) for p in both[coldkey]] == [(n, s) for n, _, s in expected]
    assert both[stranger] == []
    assert one.rao == rao(subnets[3].neurons[subnets[3].uid_of(hotkey)].stakes.alpha) > 0
    assert none.rao == 0


def rpc(localnet: NodeThread, method: str, params: list[Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(localnet.url.replace("ws://", "http://"), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


async def test_root_reads_its_genesis_state_and_unmodelled_storage_is_refused(
    localnet: NodeThread, runtime: Runtime, wallets: Wallets
):
    async with sdk(localnet) as client:
        root = await client.subnets.info(0)
        # Subtensor's genesis root network: tempo 100, no neuron registered.
        assert (root.netuid, root.tempo, root.neuron_count) == (0, 100, 0)
        assert {s.netuid for s in await client.subnets.all()} == {0, 1, 3}
        assert await client.neurons.neurons(0) == []
        # An item the development chain never writes reads as absent, which is true here.
        assert await client.subnets.subnet_identity(1) is None
        # Balances are not modelled: the SDK's read fails with the node's reason, not a zero balance.
        with pytest.raises(Exception, match=r"does not model the storage item System\.Account"):
            await client.balances.get(wallets.hotkey("validator"))
    async with turbobt.Bittensor(localnet.url) as tb:
        assert await tb.subtensor.subtensor_module.TotalNetworks.get() == 3
    # A raw read and a listing of an unmodelled item: a JSON-RPC error naming it, never a null.
    item = runtime.storage_item("SubtensorModule", "SubnetTAO")
    key = "0x" + runtime.storage_key(item, 1).hex()
    for method, params in (("state_getStorage", [key]), ("state_getKeysPaged", [key, 10])):
        answer = rpc(localnet, method, params)
        assert "result" not in answer, method
        assert answer["error"]["code"] == -32000
        assert "SubtensorModule.SubnetTAO" in answer["error"]["message"]
    # A key of no storage item at all is simply absent.
    assert rpc(localnet, "state_getStorage", ["0x" + "ab" * 32])["result"] is None


def test_every_storage_item_of_the_metadata_is_modelled_empty_or_refused(
    localnet: NodeThread, runtime: Runtime
):
    # No item answers a silent null unless the node models it or its emptiness is the truth.
    modelled = {(item.pallet, item.name) for item in localnet.node.storage.modelled()}
    refused, answered = set(), set()
    for prefix, named in runtime.storage_names.items():
        answer = rpc(localnet, "state_getKeysPaged", ["0x" + prefix.hex(), 1])
        if "error" in answer:
            assert answer["error"]["code"] == -32000 and ".".join(named) in answer["error"]["message"]
            refused.add(named)
        else:
            answered.add(named)
    assert answered - modelled <= EMPTY_ITEMS
    assert modelled <= answered
    assert ("System", "Account") in refused and ("SubtensorModule", "SubnetTAO") in refused
    assert len(refused) + len(answered) == len(runtime.storage_names)
