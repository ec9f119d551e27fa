"""`state_call` runtime APIs, answered from a subnet snapshot and SCALE-encoded with the runtime's own types.

Units are converted back to the chain's: TAO/alpha floats to rao (1e9), [0, 1] proportions to u16.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from app.chain.client import AxonInfo, Neuron, float_to_u16
from app.devchain.node.codec import Runtime, account_hex
from app.devchain.state import SubnetSnapshot

RAO = 1_000_000_000


def rao(value: float) -> int:
    return max(0, round(value * RAO))


def axon_value(axon: AxonInfo, block: int = 0, version: int = 0) -> dict[str, Any]:
    address = ipaddress.ip_address(axon.ip)
    return {
        "block": block,
        "version": version,
        "ip": int(address),
        "port": axon.port,
        "ip_type": address.version,
        "protocol": axon.protocol,
        "placeholder1": 0,
        "placeholder2": 0,
    }


def served_axon_value(snapshot: SubnetSnapshot, neuron: Neuron) -> dict[str, Any]:
    """The neuron's `AxonInfo` with the block it was served at and the version sent (zeros if unserved)."""
    served = snapshot.axons_served.get(neuron.hotkey)
    if served is None:
        return axon_value(neuron.axon_info)
    return axon_value(neuron.axon_info, block=served.block, version=served.version)


def neuron_lite_value(snapshot: SubnetSnapshot, neuron: Neuron) -> dict[str, Any]:
    netuid = snapshot.netuid
    return {
        "hotkey": account_hex(neuron.hotkey),
        "coldkey": account_hex(neuron.coldkey),
        "uid": neuron.uid,
        "netuid": netuid,
        "active": neuron.active,
        "axon_info": served_axon_value(snapshot, neuron),
        "prometheus_info": {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 4},
        # turbobt reads the first (coldkey, stake) pair as the neuron's stake.
        "stake": [(account_hex(neuron.coldkey), rao(neuron.stake))],
        "rank": float_to_u16(neuron.rank),
        "emission": rao(neuron.emission),
        "incentive": float_to_u16(neuron.incentive),
        "consensus": float_to_u16(neuron.consensus),
        "trust": float_to_u16(neuron.trust),
        "validator_trust": float_to_u16(neuron.validator_trust),
        "dividends": float_to_u16(neuron.dividends),
        "last_update": neuron.last_update,
        "validator_permit": neuron.validator_permit,
        "pruning_score": min(neuron.pruning_score, 65535),
    }


def neurons_lite(runtime: Runtime, snapshot: SubnetSnapshot) -> bytes:
    values = [neuron_lite_value(snapshot, n) for n in snapshot.neurons]
    return runtime.encode(runtime.api_output("NeuronInfoRuntimeApi", "get_neurons_lite"), values)


def neuron_lite(runtime: Runtime, snapshot: SubnetSnapshot | None, uid: int) -> bytes:
    output = runtime.api_output("NeuronInfoRuntimeApi", "get_neuron_lite")
    if snapshot is None or not 0 <= uid < len(snapshot.neurons):
        return runtime.encode(output, None)
    return runtime.encode(output, neuron_lite_value(snapshot, snapshot.neurons[uid]))


def neuron_full(runtime: Runtime, snapshot: SubnetSnapshot | None, uid: int) -> bytes:
    """`get_neuron` (what turbobt's `neuron(...).get()` reads): the lite fields plus weights and bonds."""
    output = runtime.api_output("NeuronInfoRuntimeApi", "get_neuron")
    if snapshot is None or not 0 <= uid < len(snapshot.neurons):
        return runtime.encode(output, None)
    value = neuron_lite_value(snapshot, snapshot.neurons[uid])
    value["weights"] = [list(pair) for pair in snapshot.weights.get(uid, ())]
    value["bonds"] = []
    return runtime.encode(output, value)


def hyperparams(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    output = runtime.api_output("SubnetInfoRuntimeApi", "get_subnet_hyperparams")
    if snapshot is None:
        return runtime.encode(output, None)
    return runtime.encode(output, msgspec.to_builtins(snapshot.hyperparams))


def subnet_state(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    output = runtime.api_output("SubnetInfoRuntimeApi", "get_subnet_state")
    if snapshot is None:
        return runtime.encode(output, None)
    neurons = snapshot.neurons
    value = {
        "netuid": snapshot.netuid,
        "hotkeys": [account_hex(n.hotkey) for n in neurons],
        "coldkeys": [account_hex(n.coldkey) for n in neurons],
        "active": [n.active for n in neurons],
        "validator_permit": [n.validator_permit for n in neurons],
        "pruning_score": [min(n.pruning_score, 65535) for n in neurons],
        "last_update": [n.last_update for n in neurons],
        "emission": [rao(n.emission) for n in neurons],
        "dividends": [float_to_u16(n.dividends) for n in neurons],
        "incentives": [float_to_u16(n.incentive) for n in neurons],
        "consensus": [float_to_u16(n.consensus) for n in neurons],
        "trust": [float_to_u16(n.trust) for n in neurons],
        "rank": [float_to_u16(n.rank) for n in neurons],
        "block_at_registration": [0 for _ in neurons],
        "alpha_stake": [rao(n.stakes.alpha) for n in neurons],
        "tao_stake": [rao(n.stakes.tao) for n in neurons],
        "total_stake": [rao(n.stakes.total) for n in neurons],
        "emission_history": [],
    }
    return runtime.encode(output, value)


# The node charges no fees (balances are not modelled), so every estimate is this fixed one: zero rao, zero
# weight, the Normal class; what the node's `ExtrinsicSuccess` events report as well.
FIXED_FEE_RAO = 0


def fixed_fee_info(runtime: Runtime) -> bytes:
    """`TransactionPaymentApi.query_info` for any extrinsic: a fixed fee, whatever the call."""
    value = {"weight": {"ref_time": 0, "proof_size": 0}, "class": "Normal", "partial_fee": FIXED_FEE_RAO}
    return runtime.encode(runtime.api_output("TransactionPaymentApi", "query_info"), value)


def decode_netuid_args(runtime: Runtime, api: str, method: str, data: bytes) -> dict[str, Any]:
    """Decode a runtime API call's SCALE-encoded arguments (concatenated, in declaration order)."""
    from scalecodec.base import ScaleBytes

    scale = ScaleBytes(bytearray(data))
    args: dict[str, Any] = {}
    for name, type_string in runtime.api_inputs(api, method):
        obj = runtime.registry.create_scale_object(type_string, data=scale, metadata=runtime.metadata)
        args[name] = obj.decode(check_remaining=False)
    return args
