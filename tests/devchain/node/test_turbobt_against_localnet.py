"""The unmodified turbobt client, and Pylon's turbobt adapter over it, against `pylon localnet`."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import turbobt

from app.chain.client import BlockInfo, BlockNotFound, ChainError, ExtrinsicFailed

from .conftest import NodeThread, Wallets


def post(url: str, method: str, params: object) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url.replace("ws://", "http://"), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def wait_blocks(adapter, count: int = 1) -> BlockInfo:
    start = (await adapter.head()).number
    async with asyncio.timeout(20):
        while True:
            head = await adapter.head()
            if head.number >= start + count:
                return head
            await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------------------ reads
async def test_latest_block_and_block_by_number(localnet: NodeThread, adapter):
    async with turbobt.Bittensor(localnet.url) as bt:
        head = await bt.head.get()
        expected = localnet.call(lambda node: node.chain.head)
        assert head.number >= expected.number
        again = await bt.block(expected.number).get()
        assert again.hash == expected.hash
        # turbobt's quirk: a future block comes back with no hash; the adapter makes it BlockNotFound.
        future = await bt.block(head.number + 1000).get()
        assert future.hash is None
    info = await adapter.block(expected.number)
    assert info == BlockInfo(number=expected.number, hash=expected.hash)
    with pytest.raises(BlockNotFound):
        await adapter.block(expected.number + 1000)


async def test_neurons_at_a_block_match_the_state_model(localnet: NodeThread, adapter, wallets: Wallets):
    head = await adapter.head()
    neurons = await adapter.neurons(1, head)
    model = localnet.call(lambda node: node.chain.subnet(1, head).neurons)
    assert [n.hotkey for n in neurons] == [n.hotkey for n in model]
    for got, want in zip(neurons, model, strict=True):
        assert got.uid == want.uid
        assert got.coldkey == want.coldkey
        assert got.axon_info == want.axon_info
        assert got.validator_permit == want.validator_permit
        assert got.last_update == want.last_update
        assert got.stake == pytest.approx(want.stake, rel=1e-9, abs=1e-9)
        # u16 proportions travel rounded to 1/65535.
        assert got.incentive == pytest.approx(want.incentive, abs=1 / 65535)
        assert got.dividends == pytest.approx(want.dividends, abs=1 / 65535)
        assert got.stakes.alpha == pytest.approx(want.stakes.alpha, abs=1e-9)
        assert got.stakes.tao == pytest.approx(want.stakes.tao, abs=1e-9)
    mine = {n.hotkey: n for n in neurons}
    assert mine[wallets.hotkey("validator")].validator_permit
    assert wallets.hotkey("miner") in mine
    assert wallets.hotkey("stranger") not in mine


async def test_hyperparams_and_subnet_state(localnet: NodeThread, adapter):
    head = await adapter.head()
    params = await adapter.hyperparams(1, head)
    assert params == localnet.call(lambda node: node.chain.subnet(1, head).hyperparams)
    state = await adapter.subnet_state(1, head)
    model = localnet.call(lambda node: node.chain.subnet_state(1, head))
    assert state.hotkeys == model.hotkeys
    assert state.validator_permit == model.validator_permit
    assert state.alpha_stake == pytest.approx(model.alpha_stake, abs=1e-9)
    assert state.total_stake == pytest.approx(model.total_stake, abs=1e-9)


async def test_unknown_block_is_turbobts_unknown_block(localnet: NodeThread, adapter):
    from turbobt.substrate.exceptions import UnknownBlock

    async with turbobt.Bittensor(localnet.url) as bt:
        with pytest.raises(UnknownBlock):
            await bt.subnet(1).get_hyperparameters(block_hash="0x" + "ab" * 32)
    with pytest.raises((BlockNotFound, ChainError)):
        await adapter.neurons(1, BlockInfo(number=5, hash="0x" + "cd" * 32))


async def test_http_post_reads(localnet: NodeThread):
    answer = await asyncio.to_thread(post, localnet.url, "chain_getHeader", [])
    assert int(answer["result"]["number"], 16) >= localnet.call(lambda node: node.chain.genesis_number)
    missing = await asyncio.to_thread(post, localnet.url, "no_such_method", [])
    assert missing["error"]["code"] == -32601


# --------------------------------------------------------------------------------------------- weights
async def test_set_weights_lands_on_chain(localnet: NodeThread, adapter, wallets: Wallets):
    result = await adapter.set_weights(wallets["validator"], 1, {0: 1.0, 3: 0.5})
    assert result.success
    head = await adapter.head()
    weights = await adapter.weights(1, head)
    uid = localnet.call(lambda node: node.chain.subnet(1).uid_of(wallets.hotkey("validator")))
    assert weights[uid] == {0: 65535, 3: 32768}
    nonce = await asyncio.to_thread(
        post, localnet.url, "system_accountNextIndex", {"account": wallets.hotkey("validator")}
    )
    assert nonce["result"] == 1


@pytest.mark.parametrize(
    ("who", "change", "weights", "error"),
    [
        ("stranger", {}, {0: 1.0}, "HotKeyNotRegisteredInSubNet"),
        ("miner", {}, {0: 1.0, 1: 1.0}, "NeuronNoValidatorPermit"),
        ("validator", {"weights_version": 10**9}, {0: 1.0}, "IncorrectWeightVersionKey"),
        ("validator", {"max_weights_limit": 30000}, {0: 1.0, 1: 0.1}, "MaxWeightExceeded"),
        ("validator", {"commit_reveal_weights_enabled": True}, {0: 1.0}, "CommitRevealEnabled"),
    ],
)
async def test_set_weights_failures_are_subtensor_errors(
    localnet: NodeThread, adapter, wallets: Wallets, who, change, weights, error
):
    if change:
        localnet.call(lambda node: node.chain.set_hyperparams(1, **change))
    with pytest.raises(ExtrinsicFailed) as failed:
        await adapter.set_weights(wallets[who], 1, weights)
    assert failed.value.error_name == error


async def test_set_weights_too_fast(localnet: NodeThread, adapter, wallets: Wallets):
    await adapter.set_weights(wallets["validator"], 1, {0: 1.0})
    with pytest.raises(ExtrinsicFailed) as failed:
        await adapter.set_weights(wallets["validator"], 1, {1: 1.0})
    assert failed.value.error_name == "SettingWeightsTooFast"


async def test_commit_weights_recorded_and_commit_reveal_rules(
    localnet: NodeThread, adapter, wallets: Wallets
):
    from turbobt.subtensor.exceptions import CommitRevealDisabled, CommittingWeightsTooFast

    async with turbobt.Bittensor(localnet.url, wallet=wallets["validator"]) as bt:
        with pytest.raises(CommitRevealDisabled):
            await asyncio.wait_for(bt.subnet(1).weights.commit({0: 1.0}), 30)
    localnet.call(lambda node: node.chain.set_hyperparams(1, commit_reveal_weights_enabled=True))
    result = await adapter.commit_weights(wallets["validator"], 1, {0: 1.0, 2: 0.25})
    assert result.reveal_round and result.reveal_round > 0
    pending = await adapter.pending_commits(1, await adapter.head())
    assert [(c.hotkey, c.reveal_round) for c in pending] == [
        (wallets.hotkey("validator"), result.reveal_round)
    ]
    async with turbobt.Bittensor(localnet.url, wallet=wallets["validator"]) as bt:
        with pytest.raises(CommittingWeightsTooFast):
            await asyncio.wait_for(bt.subnet(1).weights.commit({0: 1.0}), 30)


# --------------------------------------------------------------------------------- axon, certificates
async def test_serve_axon_and_certificates(localnet: NodeThread, adapter, wallets: Wallets):
    miner = wallets["miner"]
    await adapter.serve_axon(miner, 1, "1.2.3.4", 8091)
    neurons = {n.hotkey: n for n in await adapter.neurons(1, await adapter.head())}
    axon = neurons[wallets.hotkey("miner")].axon_info
    assert (axon.ip, axon.port, axon.protocol) == ("1.2.3.4", 8091, 4)
    assert await adapter.certificates(1, await adapter.head()) == {}

    keypair = await adapter.generate_certificate(miner, 1)
    head = await adapter.head()
    certificates = await adapter.certificates(1, head)
    assert certificates[wallets.hotkey("miner")].public_key == keypair.public_key.removeprefix("0x")
    one = await adapter.certificate(1, wallets.hotkey("miner"), head)
    assert one is not None and one.algorithm == 1
    # The certificate rides along with the axon it was posted with.
    neurons = {n.hotkey: n for n in await adapter.neurons(1, head)}
    assert neurons[wallets.hotkey("miner")].axon_info.port == 8091


async def test_serve_axon_unregistered_hotkey_fails(localnet: NodeThread, adapter, wallets: Wallets):
    with pytest.raises(ExtrinsicFailed) as failed:
        await adapter.serve_axon(wallets["stranger"], 1, "1.2.3.4", 8091)
    assert failed.value.error_name == "HotKeyNotRegisteredInNetwork"


# ------------------------------------------------------------------------------------------------ heads
async def test_head_subscription_follows_new_blocks(localnet: NodeThread, adapter):
    seen: list[int] = []
    async with asyncio.timeout(20):
        async for block in adapter.subscribe_heads():
            seen.append(block.number)
            if len(seen) == 3:
                break
    assert seen == sorted(seen) and len(set(seen)) == 3


async def test_new_heads_subscription_and_unsubscribe(localnet: NodeThread):
    import websockets.asyncio.client

    async with websockets.asyncio.client.connect(localnet.url) as ws:
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads", "params": []})
        )
        sub = json.loads(await ws.recv())["result"]
        numbers = []
        async with asyncio.timeout(10):
            while len(numbers) < 2:
                message = json.loads(await ws.recv())
                assert message["method"] == "chain_newHead" and message["params"]["subscription"] == sub
                numbers.append(int(message["params"]["result"]["number"], 16))
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "chain_unsubscribeNewHeads", "params": [sub]})
        )
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == 2:
                    assert message["result"] is True
                    break
    assert numbers[1] == numbers[0] + 1
