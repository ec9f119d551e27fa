"""The turbobt adapter: translation from turbobt's objects, archive routing, timeouts and reconnects.

The fakes stand in for turbobt's `Bittensor` at its public surface (what the adapter calls); the objects
they return are turbobt's own (`turbobt.neuron.Neuron` built from a runtime-API dict).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from turbobt.neuron import Neuron as TurbobtNeuron

from app.chain.client import (
    BlockInfo,
    BlockNotFound,
    ChainTimeout,
    ChainUnavailable,
    Commitment,
    UnknownNetuid,
)
from app.chain.turbobt import (
    FALLBACK_TOTAL,
    TurbobtChainClient,
    commitment_from_turbobt,
    extrinsic_from_turbobt,
    hyperparams_from_turbobt,
)

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
COLDKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


def runtime_neuron(uid: int, hotkey: str = HOTKEY) -> dict[str, Any]:
    """What `NeuronInfoRuntimeApi.get_neurons_lite` decodes to (u16 proportions, rao)."""
    return {
        "hotkey": hotkey,
        "coldkey": COLDKEY,
        "uid": uid,
        "netuid": 1,
        "active": True,
        "axon_info": {
            "block": 1,
            "version": 1,
            "ip": "203.0.113.7",
            "port": 8091,
            "ip_type": 4,
            "protocol": 4,
        },
        "prometheus_info": {"block": 0, "version": 0, "ip": "0.0.0.0", "port": 0, "ip_type": 4},
        "stake": {COLDKEY: 2_500_000_000_000},
        "rank": 32768,
        "emission": 1_500_000_000,
        "incentive": 65535,
        "consensus": 16384,
        "trust": 65535,
        "validator_trust": 0,
        "dividends": 0,
        "last_update": 4321,
        "validator_permit": False,
        "pruning_score": 777,
    }


STATE = {
    "hotkeys": [HOTKEY],
    "coldkeys": [COLDKEY],
    "active": [True],
    "validator_permit": [False],
    "alpha_stake": [2_000_000_000_000],
    "tao_stake": [100_000_000_000],
    "total_stake": [2_018_000_000_000],
}


class FakeSubnet:
    def __init__(self, bt: FakeBittensor, netuid: int) -> None:
        self.bt, self.netuid = bt, netuid
        self.neurons = self

    def _check(self, block_hash: str, operation: str) -> None:
        self.bt.calls.append((operation, block_hash))
        if self.bt.fail_with is not None:
            raise self.bt.fail_with

    async def all(self, block_hash: str) -> list[TurbobtNeuron]:
        self._check(block_hash, "neurons")
        if self.netuid != 1:
            return []
        return [TurbobtNeuron.from_dict(runtime_neuron(0), subnet=None)]  # type: ignore[arg-type]

    async def get_state(self, block_hash: str) -> dict[str, Any] | None:
        self._check(block_hash, "state")
        return STATE if self.netuid == 1 else None

    async def get_hyperparameters(self, block_hash: str) -> dict[str, Any] | None:
        self._check(block_hash, "hyperparams")
        return (
            {"tempo": 99, "commit_reveal_weights_enabled": 1, "a_future_field": 5}
            if self.netuid == 1
            else None
        )


class FakeChain:
    def __init__(self, bt: FakeBittensor) -> None:
        self.bt = bt

    async def getHeader(self) -> dict[str, Any]:
        await asyncio.sleep(self.bt.delay)
        return {"number": self.bt.head}

    async def getBlockHash(self, number: int) -> str | None:
        return None if number > self.bt.head else f"0x{number:064x}"


class FakeBittensor:
    def __init__(self, uri: str, head: int = 10_000) -> None:
        self.uri = uri
        self.head = head
        self.delay = 0.0
        self.calls: list[tuple[str, str]] = []
        self.fail_with: BaseException | None = None
        self.closed = False
        self.subtensor = type("Subtensor", (), {"chain": FakeChain(self)})()

    def subnet(self, netuid: int) -> FakeSubnet:
        return FakeSubnet(self, netuid)

    async def close(self) -> None:
        self.closed = True


class Nodes:
    """A connect factory that hands out one fake per URI and can refuse connections."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeBittensor] = {}
        self.refuse = 0
        self.connects = 0

    async def __call__(self, uri: str) -> FakeBittensor:
        self.connects += 1
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRefusedError("refused")
        return self.nodes.setdefault(uri, FakeBittensor(uri))


def make(nodes: Nodes, **kwargs: Any) -> TurbobtChainClient:
    options: dict[str, Any] = {
        "archive_network": "archive",
        "archive_blocks_cutoff": 300,
        "call_timeout": 1.0,
    }
    return TurbobtChainClient("finney", connect=nodes, backoff=(0.05, 0.2), **{**options, **kwargs})


def test_neuron_translation_matches_bittensor_pylon_units() -> None:
    from app.chain.turbobt import neuron_from_turbobt, stakes_by_hotkey

    turbobt_neuron = TurbobtNeuron.from_dict(runtime_neuron(3), subnet=None)  # type: ignore[arg-type]
    neuron = neuron_from_turbobt(turbobt_neuron, stakes_by_hotkey(STATE)[HOTKEY])
    assert neuron.uid == 3 and neuron.hotkey == HOTKEY and neuron.coldkey == COLDKEY
    assert neuron.axon_info.ip == "203.0.113.7" and isinstance(neuron.axon_info.ip, str)
    assert (neuron.axon_info.port, neuron.axon_info.protocol) == (8091, 4)
    assert neuron.stake == 2500.0
    assert neuron.emission == 1.5
    assert neuron.rank == pytest.approx(0.5, abs=1e-4)
    assert neuron.incentive == 1.0
    assert neuron.last_update == 4321 and neuron.pruning_score == 777
    assert (neuron.stakes.alpha, neuron.stakes.tao, neuron.stakes.total) == (2000.0, 100.0, 2018.0)


def test_hyperparams_translation_ignores_unknown_fields() -> None:
    params = hyperparams_from_turbobt({"tempo": 99, "commit_reveal_weights_enabled": 1, "new_thing": 1})
    assert params.tempo == 99 and params.commit_reveal_weights_enabled is True


async def test_reads_pass_explicit_block_hashes_and_translate() -> None:
    nodes = Nodes()
    client = make(nodes)
    head = await client.head()
    assert head == BlockInfo(number=10_000, hash=f"0x{10_000:064x}")
    neurons = await client.neurons(1, head)
    assert [n.hotkey for n in neurons] == [HOTKEY]
    assert neurons[0].stakes.total == 2018.0
    assert nodes.nodes["finney"].calls == [("neurons", head.hash), ("state", head.hash)]
    assert (await client.hyperparams(1, head)).tempo == 99
    with pytest.raises(UnknownNetuid):
        await client.neurons(5, head)
    await client.close()
    assert nodes.nodes["finney"].closed


async def test_old_blocks_go_to_the_archive_node() -> None:
    nodes = Nodes()
    client = make(nodes)
    await client.head()
    before = FALLBACK_TOTAL.labels("cutoff", "neurons")._value.get()
    recent = await client.block(9_800)
    await client.neurons(1, recent)
    assert "archive" not in nodes.nodes
    old = await client.block(9_000)
    await client.neurons(1, old)
    assert nodes.nodes["archive"].calls == [("neurons", old.hash), ("state", old.hash)]
    assert FALLBACK_TOTAL.labels("cutoff", "neurons")._value.get() == before + 1


async def test_pruned_state_on_the_main_node_falls_back_to_the_archive() -> None:
    nodes = Nodes()
    client = make(nodes)
    head = await client.head()
    nodes.nodes["finney"].fail_with = Exception("State already discarded for 0xabc")
    neurons = await client.neurons(1, BlockInfo(number=head.number - 10, hash=head.hash))
    assert neurons and nodes.nodes["archive"].calls
    client.archive_network = None
    with pytest.raises(BlockNotFound, match="pruned"):
        await client.neurons(1, head)


async def test_future_block_without_hash_is_not_found() -> None:
    client = make(Nodes())
    await client.head()
    with pytest.raises(BlockNotFound, match="future"):
        await client.block(10_001)


async def test_calls_time_out() -> None:
    nodes = Nodes()
    client = make(nodes, call_timeout=0.05)
    await client.head()
    nodes.nodes["finney"].delay = 1.0
    with pytest.raises(ChainTimeout):
        await client.head()


async def test_reconnects_with_backoff_after_a_drop() -> None:
    nodes = Nodes()
    client = make(nodes)
    await client.head()
    nodes.nodes["finney"].fail_with = ConnectionResetError("gone")
    with pytest.raises(ChainUnavailable, match="lost"):
        await client.neurons(1, await client.head())
    assert nodes.nodes["finney"].closed
    nodes.nodes.clear()
    nodes.refuse = 1
    # Inside the backoff window no connection is attempted.
    with pytest.raises(ChainUnavailable, match="reconnecting"):
        await client.head()
    assert nodes.connects == 1
    await asyncio.sleep(0.06)
    with pytest.raises(ChainUnavailable, match="cannot connect"):
        await client.head()
    await asyncio.sleep(0.25)
    assert (await client.head()).number == 10_000
    assert nodes.connects == 3


async def test_a_real_chain_starts_nothing_and_registers_no_dev_validator() -> None:
    nodes = Nodes()
    client = make(nodes)
    client.start()
    assert await client.register_dev_validator(HOTKEY) == {}
    assert nodes.connects == 0


# ------------------------------------------------------------------------------------ commitments, blocks
def test_commitments_map_every_shape_scalecodec_decodes() -> None:
    """`Raw0` decodes as [], a ciphertext that is valid UTF-8 as text: both turbobt's own mapping trips on."""
    raw = {"deposit": 0, "block": 9, "info": {"fields": [{"Raw3": "0x616263"}]}}
    empty = {"deposit": 0, "block": 9, "info": {"fields": [{"Raw0": []}]}}
    sealed = {
        "deposit": 0,
        "block": 9,
        "info": {"fields": [{"TimelockEncrypted": {"encrypted": "\x01\x02", "reveal_round": 77}}]},
    }
    assert commitment_from_turbobt(HOTKEY, raw) == Commitment(hotkey=HOTKEY, block=9, data=b"abc")
    assert commitment_from_turbobt(HOTKEY, empty) == Commitment(hotkey=HOTKEY, block=9, data=b"")
    assert commitment_from_turbobt(HOTKEY, sealed) == Commitment(
        hotkey=HOTKEY, block=9, data=b"\x01\x02", kind="timelock_encrypted", reveal_round=77
    )
    assert commitment_from_turbobt(HOTKEY, {"block": 9, "info": {"fields": []}}) is None


def test_a_decoded_extrinsic_becomes_a_block_extrinsic() -> None:
    decoded = {
        "extrinsic_hash": "0xab",
        "extrinsic_length": 140,
        "address": "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d",
        "call": {
            "call_module": "SubtensorModule",
            "call_function": "set_weights",
            "call_args": [{"name": "netuid", "type": "NetUid", "value": 1}],
        },
    }
    extrinsic = extrinsic_from_turbobt(5, 1, decoded)
    assert extrinsic.address == HOTKEY
    assert (extrinsic.block_number, extrinsic.extrinsic_index, extrinsic.extrinsic_length) == (5, 1, 140)
    assert extrinsic.call.call_args[0].value == 1
    inherent = extrinsic_from_turbobt(5, 0, {"extrinsic_hash": "0xcd", "extrinsic_length": 10, "call": {}})
    assert inherent.address is None


async def test_oversized_commitments_are_refused_before_any_connection() -> None:
    async def never(uri: str) -> Any:
        raise AssertionError("no connection expected")

    client = TurbobtChainClient("ws://unused", archive_network=None, connect=never)
    with pytest.raises(ValueError, match="at most 128"):
        await client.set_commitment(object(), 1, b"x" * 129)  # type: ignore[arg-type]
