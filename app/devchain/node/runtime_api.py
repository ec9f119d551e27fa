"""`state_call` runtime APIs, answered from a subnet snapshot and SCALE-encoded with the runtime's own types.

Units are converted back to the chain's: TAO/alpha floats to rao (1e9), [0, 1] proportions to u16.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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


def neurons_lite(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    """`get_neurons_lite` (an unknown subnet, or root with no neuron, answers an empty list)."""
    values = [neuron_lite_value(snapshot, n) for n in snapshot.neurons] if snapshot else []
    return runtime.encode(runtime.api_output("NeuronInfoRuntimeApi", "get_neurons_lite"), values)


def neuron_lite(runtime: Runtime, snapshot: SubnetSnapshot | None, uid: int) -> bytes:
    output = runtime.api_output("NeuronInfoRuntimeApi", "get_neuron_lite")
    if snapshot is None or not 0 <= uid < len(snapshot.neurons):
        return runtime.encode(output, None)
    return runtime.encode(output, neuron_lite_value(snapshot, snapshot.neurons[uid]))


def neuron_full_value(snapshot: SubnetSnapshot, neuron: Neuron) -> dict[str, Any]:
    """Subtensor's `NeuronInfo`: the lite fields plus the neuron's weights row (uid, u16 weight) and its
    bonds (the simulated epoch keeps none, as on a subnet whose bonds were reset: empty)."""
    value = neuron_lite_value(snapshot, neuron)
    value["weights"] = [list(pair) for pair in snapshot.weights.get(neuron.uid, ())]
    value["bonds"] = []
    return value


def neuron_full(runtime: Runtime, snapshot: SubnetSnapshot | None, uid: int) -> bytes:
    """`get_neuron` (what turbobt's `neuron(...).get()` reads): the lite fields plus weights and bonds."""
    output = runtime.api_output("NeuronInfoRuntimeApi", "get_neuron")
    if snapshot is None or not 0 <= uid < len(snapshot.neurons):
        return runtime.encode(output, None)
    return runtime.encode(output, neuron_full_value(snapshot, snapshot.neurons[uid]))


def neurons_full(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    """`get_neurons`: every neuron's `NeuronInfo` (an unknown subnet answers an empty list, as subtensor)."""
    values = [neuron_full_value(snapshot, n) for n in snapshot.neurons] if snapshot else []
    return runtime.encode(runtime.api_output("NeuronInfoRuntimeApi", "get_neurons"), values)


def hyperparams(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    output = runtime.api_output("SubnetInfoRuntimeApi", "get_subnet_hyperparams")
    if snapshot is None:
        return runtime.encode(output, None)
    return runtime.encode(output, msgspec.to_builtins(snapshot.hyperparams))


def _columns(snapshot: SubnetSnapshot) -> dict[str, list[Any]]:
    """The per-uid columns `SubnetState` and `Metagraph` share, in the chain's units."""
    neurons = snapshot.neurons
    return {
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
        # The simulated subnets are registered at genesis, with every neuron in them.
        "block_at_registration": [0 for _ in neurons],
        "alpha_stake": [rao(n.stakes.alpha) for n in neurons],
        "tao_stake": [rao(n.stakes.tao) for n in neurons],
        "total_stake": [rao(n.stakes.total) for n in neurons],
    }


def subnet_state(runtime: Runtime, snapshot: SubnetSnapshot | None) -> bytes:
    output = runtime.api_output("SubnetInfoRuntimeApi", "get_subnet_state")
    if snapshot is None:
        return runtime.encode(output, None)
    value = {"netuid": snapshot.netuid, **_columns(snapshot), "emission_history": []}
    return runtime.encode(output, value)


# What the simulated chain has no model of reads as subtensor's value for a subnet that never set it: no
# identity or name, no owner (the all-zero account), no pool reserves or pending emission.
ZERO_ACCOUNT = "0x" + "00" * 32


def metagraph(runtime: Runtime, snapshot: SubnetSnapshot | None, block: int) -> bytes:
    """`SubnetInfoRuntimeApi.get_metagraph`: the subnet's hyperparameters and per-uid columns at `block`.

    Modelled: tempo and the epoch schedule (`last_step`: the last block whose epoch ran, by subtensor's
    `(block + netuid + 1) % (tempo + 1)` rule), every hyperparameter, the burn (at its floor, as the
    `Burn` storage), uids, keys, served axons, scores, emission and stakes. Not modelled, so at subtensor's
    unset values: name, symbol, identities, owner, pool reserves (`alpha_in`, `tao_in`: zero, so clients
    derive no price; `SwapRuntimeApi.current_alpha_price` has the simulated one), emissions and dividends
    per hotkey (zero). The symbol is subtensor's default for the netuid, as the `TokenSymbol` storage.
    """
    output = runtime.api_output("SubnetInfoRuntimeApi", "get_metagraph")
    if snapshot is None:
        return runtime.encode(output, None)
    from app.devchain.epoch import last_epoch_block
    from app.devchain.node.storage import token_symbol

    symbol = token_symbol(snapshot.netuid)

    params = snapshot.hyperparams
    last_step = last_epoch_block(snapshot.netuid, params.tempo, block)
    columns = _columns(snapshot)
    hyper = {
        name: getattr(params, name)
        for name in (
            "rho",
            "kappa",
            "min_allowed_weights",
            "max_weights_limit",
            "weights_version",
            "weights_rate_limit",
            "activity_cutoff",
            "max_validators",
            "difficulty",
            "registration_allowed",
            "immunity_period",
            "min_difficulty",
            "max_difficulty",
            "min_burn",
            "max_burn",
            "adjustment_alpha",
            "adjustment_interval",
            "target_regs_per_interval",
            "max_regs_per_block",
            "serving_rate_limit",
            "commit_reveal_weights_enabled",
            "commit_reveal_period",
            "liquid_alpha_enabled",
            "alpha_high",
            "alpha_low",
            "bonds_moving_avg",
        )
    }
    value = {
        "netuid": snapshot.netuid,
        "name": [],
        "symbol": list(symbol.encode()) if symbol else [],
        "identity": None,
        "network_registered_at": 0,
        "owner_hotkey": ZERO_ACCOUNT,
        "owner_coldkey": ZERO_ACCOUNT,
        "block": block,
        "tempo": params.tempo,
        "last_step": last_step,
        "blocks_since_last_step": block - last_step,
        "subnet_emission": 0,
        "alpha_in": 0,
        "alpha_out": sum(columns["alpha_stake"]),
        "tao_in": 0,
        "alpha_out_emission": 0,
        "alpha_in_emission": 0,
        "tao_in_emission": 0,
        "pending_alpha_emission": 0,
        "pending_root_emission": 0,
        "subnet_volume": 0,
        "moving_price": {"bits": 0},
        **hyper,
        "num_uids": len(snapshot.neurons),
        "max_uids": len(snapshot.neurons),
        "burn": params.min_burn,
        # Subtensor's default: subnets register by burn only.
        "pow_registration_allowed": False,
        "hotkeys": columns["hotkeys"],
        "coldkeys": columns["coldkeys"],
        "identities": [None for _ in snapshot.neurons],
        "axons": [served_axon_value(snapshot, n) for n in snapshot.neurons],
        **{k: v for k, v in columns.items() if k not in ("hotkeys", "coldkeys")},
        "tao_dividends_per_hotkey": [(hk, 0) for hk in columns["hotkeys"]],
        "alpha_dividends_per_hotkey": [(hk, 0) for hk in columns["hotkeys"]],
    }
    return runtime.encode(output, value)


def _stake_info(netuid: int, hotkey: str, coldkey: str, alpha: float, registered: bool) -> dict[str, Any]:
    # `emission`/`tao_emission` are subtensor's per-hotkey dividends of the last epoch
    # (`AlphaDividendsPerSubnet`, `TaoDividendsPerSubnet`), which the simulated epoch does not keep: zero,
    # as in the metagraph.
    return {
        "hotkey": account_hex(hotkey),
        "coldkey": account_hex(coldkey),
        "netuid": netuid,
        "stake": rao(alpha),
        "locked": 0,
        "emission": 0,
        "tao_emission": 0,
        "drain": 0,
        "is_registered": registered,
    }


def stake_positions(subnets: Mapping[int, SubnetSnapshot], coldkey: str) -> list[dict[str, Any]]:
    """Every (hotkey, netuid) position a coldkey holds, by netuid then uid: its registered neurons."""
    # In the simulated subnets a hotkey's whole stake is its owner coldkey's, and only registered hotkeys
    # hold stake; subtensor likewise lists only non-zero positions, by netuid.
    return [
        _stake_info(netuid, n.hotkey, coldkey, n.stakes.alpha, registered=True)
        for netuid, snap in sorted(subnets.items())
        for n in snap.neurons
        if n.coldkey == coldkey and n.stakes.alpha > 0
    ]


def stake_info_for_coldkey(runtime: Runtime, subnets: Mapping[int, SubnetSnapshot], coldkey: str) -> bytes:
    output = runtime.api_output("StakeInfoRuntimeApi", "get_stake_info_for_coldkey")
    return runtime.encode(output, stake_positions(subnets, coldkey))


def stake_info_for_coldkeys(
    runtime: Runtime, subnets: Mapping[int, SubnetSnapshot], coldkeys: list[str]
) -> bytes:
    output = runtime.api_output("StakeInfoRuntimeApi", "get_stake_info_for_coldkeys")
    return runtime.encode(output, [(account_hex(c), stake_positions(subnets, c)) for c in coldkeys])


def stake_info_for_hotkey_coldkey_netuid(
    runtime: Runtime, subnets: Mapping[int, SubnetSnapshot], hotkey: str, coldkey: str, netuid: int
) -> bytes:
    output = runtime.api_output("StakeInfoRuntimeApi", "get_stake_info_for_hotkey_coldkey_netuid")
    # Subtensor answers a position for any triple: zero stake where the coldkey holds none.
    snap = subnets.get(netuid)
    uid = None if snap is None else snap.uid_of(hotkey)
    neuron = None if snap is None or uid is None else snap.neurons[uid]
    alpha = neuron.stakes.alpha if neuron is not None and neuron.coldkey == coldkey else 0.0
    found = _stake_info(netuid, hotkey, coldkey, alpha, registered=neuron is not None)
    return runtime.encode(output, found)


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
