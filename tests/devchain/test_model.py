"""The development chain's model: determinism, subtensor's weights rules, commit-reveal, serve-axon, history.

The rules are driven through the `ChainClient` (what Pylon calls), blocks produced by hand."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address, ip_network

import pytest
from bittensor_wallet import Keypair

from app.chain.client import (
    BlockNotFound,
    Certificate,
    ExtrinsicFailed,
    StatePruned,
    SubnetHyperparams,
    UnknownNetuid,
)
from app.devchain.client import SimulatedChainClient
from app.devchain.genesis import keypair_for
from app.devchain.model import SimulatedChain

ALICE = Keypair.create_from_uri("//Alice")


def make_client(**kwargs) -> tuple[SimulatedChain, SimulatedChainClient]:
    chain = SimulatedChain(**{"neurons": 16, **kwargs})
    # A long block time: tests produce blocks themselves, so nothing races.
    return chain, SimulatedChainClient(chain, block_time=3600, extrinsic_timeout=5)


async def in_next_block(client: SimulatedChainClient, coro):
    """Submit, then produce the block that includes it (as the producer task would)."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    await client.produce_block()
    return await asyncio.wait_for(task, 5)


def test_same_seed_same_chain_and_realistic_defaults() -> None:
    first, second, other = SimulatedChain(seed=7), SimulatedChain(seed=7), SimulatedChain(seed=8)
    neurons = first.subnet(1).neurons
    assert len(neurons) == 256
    assert neurons == second.subnet(1).neurons
    assert first.head.hash == second.head.hash
    assert neurons[0].hotkey != other.subnet(1).neurons[0].hotkey
    assert all(n.hotkey.startswith("5") and len(n.hotkey) == 48 for n in neurons)
    assert len({n.hotkey for n in neurons}) == 256
    assert sum(n.validator_permit for n in neurons) == 64
    # A simulated neuron's hotkey is a real keypair, so tests can sign as it.
    assert keypair_for(7, 1, 3).ss58_address == neurons[3].hotkey
    assert first.produce_block().hash == second.produce_block().hash


def test_miners_axons_are_documentation_addresses() -> None:
    """No gateway in front of the development chain ever calls a real host."""
    documentation = [ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    served = [n.axon_info for n in SimulatedChain(seed=3).subnet(1).neurons if n.axon_info.port]
    assert len(served) == 256 - 64
    assert all(any(ip_address(axon.ip) in network for network in documentation) for axon in served)
    # All three ranges are used, so miners are not all neighbours.
    assert {axon.ip.rsplit(".", 1)[0] for axon in served} == {"192.0.2", "198.51.100", "203.0.113"}


async def test_set_weights_normalises_to_u16_and_updates_last_update() -> None:
    chain, client = make_client()
    uid = chain.register(1, ALICE.ss58_address, validator=True)
    result = await in_next_block(client, client.set_weights(ALICE, 1, {0: 0.2, 1: 0.1, 2: 0.0}))
    assert result.success and result.block is not None
    assert result.block.number == chain.head.number
    assert (await client.weights(1))[uid] == {0: 65535, 1: 32768}
    neuron = (await client.neurons(1))[uid]
    assert neuron.last_update == result.block.number


@pytest.mark.parametrize(
    ("setup", "weights", "version_key", "error"),
    [
        ("unregistered", {0: 1.0}, 0, "HotKeyNotRegisteredInSubNet"),
        ("no_permit", {0: 1.0, 1: 1.0}, 0, "NeuronNoValidatorPermit"),
        ("version", {0: 1.0}, 1, "IncorrectWeightVersionKey"),
        ("max_weight", {0: 1.0, 1: 0.01}, 0, "MaxWeightExceeded"),
        ("invalid_uid", {0: 1.0, 999: 1.0}, 0, "UidVecContainInvalidOne"),
        ("commit_reveal_on", {0: 1.0}, 0, "CommitRevealEnabled"),
    ],
)
async def test_set_weights_rejections_carry_subtensor_error_names(setup, weights, version_key, error) -> None:
    chain, client = make_client()
    if setup != "unregistered":
        chain.register(1, ALICE.ss58_address, validator=setup != "no_permit")
    if setup == "version":
        chain.set_hyperparams(1, weights_version=5)
    if setup == "max_weight":
        chain.set_hyperparams(1, max_weights_limit=40000)
    if setup == "commit_reveal_on":
        chain.set_hyperparams(1, commit_reveal_weights_enabled=True)
    with pytest.raises(ExtrinsicFailed) as caught:
        await in_next_block(client, client.set_weights(ALICE, 1, weights, version_key=version_key))
    assert caught.value.error_name == error
    assert caught.value.result is not None and not caught.value.result.success


async def test_weights_rate_limit() -> None:
    chain, client = make_client(hyperparams=SubnetHyperparams(weights_rate_limit=3))
    chain.register(1, ALICE.ss58_address, validator=True)
    await in_next_block(client, client.set_weights(ALICE, 1, {0: 1.0}))
    with pytest.raises(ExtrinsicFailed, match="SettingWeightsTooFast"):
        await in_next_block(client, client.set_weights(ALICE, 1, {0: 1.0}))
    await client.produce_block()
    result = await in_next_block(client, client.set_weights(ALICE, 1, {1: 1.0}))
    assert result.success


async def test_commit_reveal_applies_weights_at_the_reveal_round() -> None:
    chain, client = make_client(hyperparams=SubnetHyperparams(tempo=5, weights_rate_limit=0))
    uid = chain.register(1, ALICE.ss58_address, validator=True)
    with pytest.raises(ExtrinsicFailed, match="CommitRevealDisabled"):
        await in_next_block(client, client.commit_weights(ALICE, 1, {3: 1.0}))
    chain.set_hyperparams(1, commit_reveal_weights_enabled=True, commit_reveal_period=1)
    result = await in_next_block(client, client.commit_weights(ALICE, 1, {3: 1.0, 4: 0.5}))
    assert result.reveal_round is not None and result.reveal_round > result.block.number  # type: ignore[union-attr]
    assert [c.hotkey for c in await client.pending_commits(1)] == [ALICE.ss58_address]
    assert uid not in await client.weights(1)
    while chain.head.number < result.reveal_round - 1:
        await client.produce_block()
        assert uid not in await client.weights(1)
    await client.produce_block()
    assert (await client.weights(1))[uid] == {3: 65535, 4: 32768}
    assert await client.pending_commits(1) == []


async def test_serve_axon_and_certificates_update_the_neuron() -> None:
    chain, client = make_client()
    uid = chain.register(1, ALICE.ss58_address)
    before = chain.head
    certificate = Certificate(algorithm=1, public_key="ab" * 32)
    await in_next_block(client, client.serve_axon(ALICE, 1, "10.1.2.3", 8091, 4, certificate=certificate))
    neuron = (await client.neurons(1))[uid]
    assert (neuron.axon_info.ip, neuron.axon_info.port, neuron.axon_info.protocol) == ("10.1.2.3", 8091, 4)
    assert await client.certificate(1, ALICE.ss58_address) == certificate
    # The older block keeps its state.
    assert (await client.neurons(1, before.info))[uid].axon_info.ip == "0.0.0.0"
    with pytest.raises(ExtrinsicFailed, match="InvalidIpAddress"):
        await in_next_block(client, client.serve_axon(ALICE, 1, "not-an-ip", 1))

    task = asyncio.ensure_future(client.generate_certificate(ALICE, 1))
    for _ in range(50):
        await asyncio.sleep(0)
        if chain.pending:
            break
    await client.produce_block()
    keypair = await asyncio.wait_for(task, 5)
    assert (await client.certificate(1, ALICE.ss58_address)).public_key == keypair.public_key  # type: ignore[union-attr]
    assert len(keypair.private_key) == 64


async def test_history_future_pruned_and_unknown() -> None:
    chain, client = make_client(state_history=3)
    first = chain.head.number
    for _ in range(5):
        await client.produce_block()
    with pytest.raises(BlockNotFound, match="future"):
        await client.block(chain.head.number + 1)
    with pytest.raises(StatePruned):
        await client.block(first + 1)
    with pytest.raises(BlockNotFound):
        await client.block(first - 10)
    assert (await client.block(chain.head.number)).hash == chain.head.hash
    with pytest.raises(UnknownNetuid):
        await client.neurons(99)
