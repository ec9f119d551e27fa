"""Subtensor's dispatch rules for the calls the development chain models, with subtensor's error names.

Pure functions over frozen snapshots: each takes a subnet at a block and returns the changed subnet, or raises
`ChainModuleError` naming what subtensor would refuse with.
"""

from __future__ import annotations

import ipaddress

import msgspec

from app.chain.client import U16_MAX, AxonInfo
from app.devchain import commitments
from app.devchain.calls import (
    ChainModuleError,
    CommitWeights,
    Extrinsic,
    ServeAxon,
    SetCommitment,
    SetWeights,
)
from app.devchain.epoch import reveal_round
from app.devchain.state import AxonServed, Commit, SubnetSnapshot, replace_neuron

# Subtensor caps unrevealed commits per hotkey.
MAX_UNREVEALED_COMMITS = 10


# The Commitments pallet's `RateLimit` default: blocks between two commitments of one hotkey on one subnet.
COMMITMENT_RATE_LIMIT = 100


def apply(
    subnets: dict[int, SubnetSnapshot],
    extrinsic: Extrinsic,
    block: int,
    *,
    commitment_rate_limit: int = COMMITMENT_RATE_LIMIT,
) -> None:
    """Dispatch one extrinsic at `block`, replacing its subnet's snapshot in `subnets`."""
    call = extrinsic.call
    snapshot = subnets.get(call.netuid)
    if snapshot is None and isinstance(call, SetCommitment):
        # The pallet asks "is this hotkey registered on netuid", which no hotkey is on a missing subnet.
        raise ChainModuleError("AccountNotAllowedCommit", f"netuid {call.netuid} does not exist")
    if snapshot is None:
        raise ChainModuleError("SubNetworkDoesNotExist", f"netuid {call.netuid}")
    if isinstance(call, SetWeights):
        if snapshot.hyperparams.commit_reveal_weights_enabled:
            raise ChainModuleError("CommitRevealEnabled", "use commit_weights on this subnet")
        subnets[call.netuid] = set_weights(
            snapshot, extrinsic.signer, call.uids, call.values, call.version_key, block
        )
    elif isinstance(call, CommitWeights):
        subnets[call.netuid] = commit_weights(snapshot, extrinsic.signer, call, block)
    elif isinstance(call, ServeAxon):
        subnets[call.netuid] = serve_axon(snapshot, extrinsic.signer, call, block)
    elif isinstance(call, SetCommitment):
        subnets[call.netuid] = commitments.set_commitment(
            snapshot, extrinsic.signer, call, block, commitment_rate_limit
        )


def check_weights(
    snapshot: SubnetSnapshot,
    hotkey: str,
    uids: tuple[int, ...],
    values: tuple[int, ...],
    version_key: int,
) -> int:
    """Subtensor's `do_set_weights` checks; returns the caller's uid."""
    params = snapshot.hyperparams
    if len(uids) != len(values):
        raise ChainModuleError("WeightVecNotEqualSize")
    uid = snapshot.uid_of(hotkey)
    if uid is None:
        raise ChainModuleError("HotKeyNotRegisteredInSubNet", f"{hotkey} on netuid {snapshot.netuid}")
    if version_key < params.weights_version:
        raise ChainModuleError(
            "IncorrectWeightVersionKey",
            f"version_key {version_key} < weights_version {params.weights_version}",
        )
    self_only = len(uids) == 1 and uids[0] == uid
    if not snapshot.neurons[uid].validator_permit and not self_only:
        raise ChainModuleError("NeuronNoValidatorPermit")
    if len(set(uids)) != len(uids):
        raise ChainModuleError("DuplicateUids")
    if any(u < 0 or u >= len(snapshot.neurons) for u in uids):
        raise ChainModuleError("UidVecContainInvalidOne")
    if not self_only and len(uids) < min(params.min_allowed_weights, len(snapshot.neurons)):
        raise ChainModuleError("WeightVecLengthIsLow")
    if any(v < 0 or v > U16_MAX for v in values):
        raise ChainModuleError("InvalidWeight")
    total = sum(values)
    # Subtensor normalises to sum 65535 and refuses any share above the max-weight limit.
    limited = not self_only and total and params.max_weights_limit < U16_MAX
    if limited and max(v * U16_MAX // total for v in values) > params.max_weights_limit:
        raise ChainModuleError("MaxWeightExceeded")
    return uid


def rate_limited(snapshot: SubnetSnapshot, uid: int, block: int) -> bool:
    limit = snapshot.hyperparams.weights_rate_limit
    last = snapshot.neurons[uid].last_update
    return limit > 0 and block - last < limit


def set_weights(
    snapshot: SubnetSnapshot,
    hotkey: str,
    uids: tuple[int, ...],
    values: tuple[int, ...],
    version_key: int,
    block: int,
    *,
    revealing: bool = False,
) -> SubnetSnapshot:
    uid = check_weights(snapshot, hotkey, uids, values, version_key)
    if not revealing and rate_limited(snapshot, uid, block):
        raise ChainModuleError(
            "SettingWeightsTooFast", f"uid {uid} last set at {snapshot.neurons[uid].last_update}"
        )
    top = max(values, default=0)
    stored = tuple(
        (u, round(v * U16_MAX / top) if top else 0) for u, v in sorted(zip(uids, values, strict=True)) if v
    )
    weights = dict(snapshot.weights)
    weights[uid] = stored
    return replace_neuron(msgspec.structs.replace(snapshot, weights=weights), uid, last_update=block)


def commit_weights(snapshot: SubnetSnapshot, hotkey: str, call: CommitWeights, block: int) -> SubnetSnapshot:
    params = snapshot.hyperparams
    if not params.commit_reveal_weights_enabled:
        raise ChainModuleError("CommitRevealDisabled", f"netuid {snapshot.netuid}")
    uid = snapshot.uid_of(hotkey)
    if uid is None:
        raise ChainModuleError("HotKeyNotRegisteredInSubNet", f"{hotkey} on netuid {snapshot.netuid}")
    if rate_limited(snapshot, uid, block):
        raise ChainModuleError("CommittingWeightsTooFast")
    if sum(1 for c in snapshot.commits if c.hotkey == hotkey) >= MAX_UNREVEALED_COMMITS:
        raise ChainModuleError("TooManyUnrevealedCommits")
    commit = Commit(
        hotkey=hotkey,
        commit_block=block,
        reveal_round=reveal_round(snapshot, block),
        uids=call.uids,
        values=call.values,
        version_key=call.version_key,
    )
    snapshot = msgspec.structs.replace(snapshot, commits=(*snapshot.commits, commit))
    return replace_neuron(snapshot, uid, last_update=block)


def reveal_due(snapshot: SubnetSnapshot, block: int) -> SubnetSnapshot:
    """Apply the commits whose reveal round has come."""
    due = [c for c in snapshot.commits if c.reveal_round <= block]
    if not due:
        return snapshot
    snapshot = msgspec.structs.replace(
        snapshot, commits=tuple(c for c in snapshot.commits if c.reveal_round > block)
    )
    for commit in due:
        # A reveal that fails the checks is dropped silently, as the chain's drand reveal does.
        try:
            snapshot = set_weights(
                snapshot,
                commit.hotkey,
                commit.uids,
                commit.values,
                commit.version_key,
                block,
                revealing=True,
            )
        except ChainModuleError:
            continue
    return snapshot


def serve_axon(snapshot: SubnetSnapshot, hotkey: str, call: ServeAxon, block: int) -> SubnetSnapshot:
    uid = snapshot.uid_of(hotkey)
    if uid is None:
        raise ChainModuleError("HotKeyNotRegisteredInNetwork", f"{hotkey} on netuid {snapshot.netuid}")
    if not 0 <= call.port <= 65535:
        raise ChainModuleError("InvalidPort")
    if not _valid_ip(call.ip):
        raise ChainModuleError("InvalidIpAddress")
    axon = AxonInfo(ip=call.ip, port=call.port, protocol=call.protocol)
    if call.certificate is not None:
        certificates = dict(snapshot.certificates)
        certificates[hotkey] = call.certificate
        snapshot = msgspec.structs.replace(snapshot, certificates=certificates)
    served = {**snapshot.axons_served, hotkey: AxonServed(block=block, version=call.version)}
    snapshot = msgspec.structs.replace(snapshot, axons_served=served)
    return replace_neuron(snapshot, uid, axon_info=axon)


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True
