"""Every storage item the node claims to model answers the simulated state, never the metadata default.

A client reads an absent key as the item's metadata default, so a default served as if it were state is a
defect no client can see. The subnet here is built with hyperparameters unlike every default, and each item
of `Storage.modelled()` is read over JSON-RPC (`state_getKeysPaged`, `state_queryStorageAt`) and compared,
raw, with the value the state implies, written out here independently of `storage.py`.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.chain.client import SubnetHyperparams, float_to_u16
from app.chain.scale import vec_bytes
from app.devchain.node.codec import Runtime, StorageItem, account_hex
from app.devchain.node.node import build_node
from app.devchain.state import BlockRecord, SubnetSnapshot

from .conftest import BLOCK_TIME, NodeThread, Wallets

# Each unlike the spec-318 metadata default of its storage item (see HYPERPARAMS below).
UNLIKE_DEFAULTS = SubnetHyperparams(
    rho=11,
    kappa=30_000,
    immunity_period=4_000,
    min_allowed_weights=3,
    max_weights_limit=40_000,
    tempo=97,
    min_difficulty=9_000_000,
    max_difficulty=2**60,
    weights_version=5,
    weights_rate_limit=7,
    adjustment_interval=111,
    activity_cutoff=4_000,
    registration_allowed=False,
    target_regs_per_interval=3,
    min_burn=600_000,
    max_burn=90_000_000_000,
    bonds_moving_avg=800_000,
    max_regs_per_block=2,
    serving_rate_limit=40,
    max_validators=5,
    adjustment_alpha=17,
    difficulty=9_500_000,
    commit_reveal_period=2,
    commit_reveal_weights_enabled=False,
    alpha_high=58_000,
    alpha_low=45_000,
    liquid_alpha_enabled=True,
)

# Per-subnet items: what subtensor keeps under the netuid, from the subnet's snapshot.
PER_SUBNET: dict[str, Callable[[SubnetSnapshot], Any]] = {
    "Rho": lambda s: s.hyperparams.rho,
    "Kappa": lambda s: s.hyperparams.kappa,
    "ImmunityPeriod": lambda s: s.hyperparams.immunity_period,
    "MinAllowedWeights": lambda s: s.hyperparams.min_allowed_weights,
    "MaxWeightsLimit": lambda s: s.hyperparams.max_weights_limit,
    "Tempo": lambda s: s.hyperparams.tempo,
    "MinDifficulty": lambda s: s.hyperparams.min_difficulty,
    "MaxDifficulty": lambda s: s.hyperparams.max_difficulty,
    "WeightsVersionKey": lambda s: s.hyperparams.weights_version,
    "WeightsSetRateLimit": lambda s: s.hyperparams.weights_rate_limit,
    "AdjustmentInterval": lambda s: s.hyperparams.adjustment_interval,
    "ActivityCutoff": lambda s: s.hyperparams.activity_cutoff,
    "NetworkRegistrationAllowed": lambda s: s.hyperparams.registration_allowed,
    "TargetRegistrationsPerInterval": lambda s: s.hyperparams.target_regs_per_interval,
    "MinBurn": lambda s: s.hyperparams.min_burn,
    "MaxBurn": lambda s: s.hyperparams.max_burn,
    "BondsMovingAverage": lambda s: s.hyperparams.bonds_moving_avg,
    "MaxRegistrationsPerBlock": lambda s: s.hyperparams.max_regs_per_block,
    "ServingRateLimit": lambda s: s.hyperparams.serving_rate_limit,
    "MaxAllowedValidators": lambda s: s.hyperparams.max_validators,
    "AdjustmentAlpha": lambda s: s.hyperparams.adjustment_alpha,
    "Difficulty": lambda s: s.hyperparams.difficulty,
    "RevealPeriodEpochs": lambda s: s.hyperparams.commit_reveal_period,
    "CommitRevealWeightsEnabled": lambda s: s.hyperparams.commit_reveal_weights_enabled,
    "LiquidAlphaOn": lambda s: s.hyperparams.liquid_alpha_enabled,
    "AlphaValues": lambda s: (s.hyperparams.alpha_low, s.hyperparams.alpha_high),
    "SubnetworkN": lambda s: len(s.neurons),
    "MaxAllowedUids": lambda s: len(s.neurons),
    "Burn": lambda s: s.hyperparams.min_burn,
    "LastUpdate": lambda s: [n.last_update for n in s.neurons],
    "Active": lambda s: [n.active for n in s.neurons],
    "ValidatorPermit": lambda s: [n.validator_permit for n in s.neurons],
    "Rank": lambda s: [float_to_u16(n.rank) for n in s.neurons],
    "Trust": lambda s: [float_to_u16(n.trust) for n in s.neurons],
    "Consensus": lambda s: [float_to_u16(n.consensus) for n in s.neurons],
    "Incentive": lambda s: [float_to_u16(n.incentive) for n in s.neurons],
    "Dividends": lambda s: [float_to_u16(n.dividends) for n in s.neurons],
    "ValidatorTrust": lambda s: [float_to_u16(n.validator_trust) for n in s.neurons],
    "PruningScores": lambda s: [min(n.pruning_score, 65535) for n in s.neurons],
    "Emission": lambda s: [round(n.emission * 1e9) for n in s.neurons],
}

# Items whose state is empty at genesis (no client wrote them yet): the tests named check them once written.
EMPTY_AT_GENESIS = {
    "NeuronCertificates": "test_turbobt_against_localnet::test_serve_axon_and_certificates",
    "Weights": "test_bittensor_against_localnet::test_raw_set_weights_lands_and_the_rate_limit_...",
    "TimelockedWeightCommits": "test_bittensor_against_localnet::test_timelocked_commit_whose_bytes_...",
    "CommitmentOf": "test_commitments_against_localnet",
    "LastCommitment": "test_commitments_against_localnet",
    "RevealedCommitments": "test_commitments_against_localnet",
}
# Items whose true value is what the metadata default also says.
EQUAL_TO_DEFAULT = {
    # The simulated chain has no stake threshold for weights: zero, as the default.
    "StakeThreshold",
}


def post(url: str, method: str, params: object) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url.replace("ws://", "http://"), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


@pytest.fixture
def fidelity_node(runtime: Runtime, wallets: Wallets) -> Iterator[NodeThread]:
    node = build_node(
        runtime,
        netuids=[1],
        neurons=16,
        seed=11,
        block_time=BLOCK_TIME,
        register=[wallets.hotkey("miner")],
        validators=[wallets.hotkey("validator")],
        hyperparams=UNLIKE_DEFAULTS,
    )
    thread = NodeThread(node).start()
    try:
        yield thread
    finally:
        thread.stop()


def default_of(runtime: Runtime, item: StorageItem) -> bytes:
    function = runtime.metadata.get_metadata_pallet(item.pallet).get_storage_function(item.name)
    # scalecodec hands the default bytes back as text when they are UTF-8, as it does values.
    return vec_bytes(function.value["default"])


def expected_entries(
    node: Any, record: BlockRecord, item: StorageItem, hotkey: str
) -> dict[tuple[Any, ...], Any]:
    """The (key params -> value) a block's state implies for one item, for a few keys that must exist."""
    snap = record.subnets[1]
    uid = snap.uid_of(hotkey)
    neuron = snap.neurons[uid]
    if item.name in PER_SUBNET:
        return {(1,): PER_SUBNET[item.name](snap)}
    served = next(n for n in snap.neurons if n.axon_info.port)
    evm_uid, (evm_address, evm_block) = next(iter(snap.evm.items()))
    table: dict[str, dict[tuple[Any, ...], Any]] = {
        "Uids": {(1, account_hex(hotkey)): uid},
        "Keys": {(1, uid): account_hex(hotkey)},
        "IsNetworkMember": {(account_hex(hotkey), 1): True},
        "Owner": {(account_hex(hotkey),): account_hex(neuron.coldkey)},
        "OwnedHotkeys": {(account_hex(neuron.coldkey),): [account_hex(hotkey)]},
        "NetworksAdded": {(0,): True, (1,): True},
        # Root (netuid 0) counts, as on subtensor.
        "TotalNetworks": {(): len(record.subnets) + 1},
        "TokenSymbol": {(1,): "0x" + "\u03b1".encode().hex()},
        "StakeThreshold": {(): 0},
        "AssociatedEvmAddress": {(1, evm_uid): (evm_address, evm_block)},
        "Axons": {
            (1, account_hex(served.hotkey)): {
                "block": node.chain.genesis_number,
                "version": 0,
                "ip": int(ipaddress.ip_address(served.axon_info.ip)),
                "port": served.axon_info.port,
                "ip_type": 4,
                "protocol": served.axon_info.protocol,
                "placeholder1": 0,
                "placeholder2": 0,
            }
        },
        "Number": {(): record.number},
        "Now": {(): node.timestamp_ms(record.number)},
        "LastStoredRound": {(): node.drand_round(record.number)},
    }
    return table.get(item.name, {})


def test_every_modelled_item_has_a_check(fidelity_node: NodeThread, wallets: Wallets):
    node = fidelity_node.node
    hotkey = wallets.hotkey("validator")
    record = fidelity_node.call(lambda n: n.chain.head)
    names = {item.name for item in node.storage.modelled()}
    unchecked = {
        item.name
        for item in node.storage.modelled()
        if item.name not in {*EMPTY_AT_GENESIS, "Events"} and not expected_entries(node, record, item, hotkey)
    }
    assert unchecked == set(), "a modelled storage item has no fidelity check here"
    # And every per-subnet item the served runtime has is modelled (else it reads as its default).
    served = {name for name in PER_SUBNET if node.runtime.has_storage("SubtensorModule", name)}
    assert served - names == set()


def test_modelled_storage_answers_state_not_defaults(fidelity_node: NodeThread, wallets: Wallets):
    node = fidelity_node.node
    runtime = node.runtime
    # Expectations and answers of one block, so both see the same state.
    record = fidelity_node.call(lambda n: n.chain.head)
    head = record.hash
    for item in node.storage.modelled():
        expected = expected_entries(node, record, item, wallets.hotkey("validator"))
        if item.name == "Events" or item.name in EMPTY_AT_GENESIS:
            continue  # Events: the node's own block records, decoded by every submission test
        assert expected, f"{item.pallet}.{item.name}: nothing to compare"
        keys = ["0x" + runtime.storage_key(item, *params).hex() for params in expected]
        (answer,) = post(fidelity_node.url, "state_queryStorageAt", [keys, head])
        default = default_of(runtime, item)
        for (params, value), (_, raw) in zip(expected.items(), answer["changes"], strict=True):
            where = f"{item.pallet}.{item.name}{list(params)}"
            assert raw is not None, f"{where}: absent, so clients read the metadata default"
            got = bytes.fromhex(raw.removeprefix("0x"))
            assert got == runtime.encode(item.value_type, value), where
            if item.name not in EQUAL_TO_DEFAULT:
                assert got != default, f"{where}: the state equals the default, so this check proves nothing"
        # Listing keys finds the same entries a map read (the SDK's query_map) walks.
        if item.param_types:
            prefix = "0x" + item.prefix.hex()
            listed = post(fidelity_node.url, "state_getKeysPaged", [prefix, 1000, prefix, head])
            assert set(keys) <= set(listed), item.name
