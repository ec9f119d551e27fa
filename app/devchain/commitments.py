"""The Commitments pallet's rules: who may commit, how often, and the drand reveal of timelocked commitments.

Pure functions over frozen snapshots, raising `ChainModuleError` with the pallet's error names:
- only a hotkey registered on the subnet may commit (`AccountNotAllowedCommit`);
- one hotkey commits at most once per `rate_limit` blocks on one subnet (`RateLimit`, error
  `CommitmentSetRateLimitExceeded`, counted from `LastCommitment`);
- a `Raw` field holds at most 128 bytes (there is no `Raw129` to encode; `SetCommitment` refuses it).

Timelocked commitments: a real chain stores ciphertext and reveals it once drand publishes the round's
signature. The simulation has no drand and no encryption: the plaintext travels with the call (`sealed`),
`data` is a stand-in "ciphertext" (a hash, not decryptable), and when the simulated drand round reaches
`reveal_round` the commitment moves to `revealed` with the block, as subtensor's
`reveal_timelocked_commitments` does (the `CommitmentOf` entry goes; the last `REVEALED_KEPT` reveals per
hotkey stay).
"""

from __future__ import annotations

import msgspec

from app.chain.client import Commitment, RevealedCommitment
from app.devchain.calls import ChainModuleError, SetCommitment
from app.devchain.state import SubnetSnapshot

# Subtensor's `RevealedCommitments` is bounded to the ten latest reveals per hotkey.
REVEALED_KEPT = 10


def set_commitment(
    snapshot: SubnetSnapshot, hotkey: str, call: SetCommitment, block: int, rate_limit: int
) -> SubnetSnapshot:
    if snapshot.uid_of(hotkey) is None:
        raise ChainModuleError("AccountNotAllowedCommit", f"{hotkey} is not registered on {snapshot.netuid}")
    last = snapshot.last_commitment.get(hotkey)
    if last is not None and block < last + rate_limit:
        raise ChainModuleError(
            "CommitmentSetRateLimitExceeded", f"last commitment at {last}, next from {last + rate_limit}"
        )
    timelocked = call.reveal_round is not None
    commitment = Commitment(
        hotkey=hotkey,
        block=block,
        data=call.data,
        kind="timelock_encrypted" if timelocked else "hex_data",
        reveal_round=call.reveal_round,
    )
    sealed = {k: v for k, v in snapshot.sealed.items() if k != hotkey}
    if timelocked and call.plaintext is not None:
        sealed[hotkey] = call.plaintext
    return msgspec.structs.replace(
        snapshot,
        commitments={**snapshot.commitments, hotkey: commitment},
        last_commitment={**snapshot.last_commitment, hotkey: block},
        sealed=sealed,
    )


def reveal_due(snapshot: SubnetSnapshot, block: int, drand_round: int) -> SubnetSnapshot:
    """Reveal the timelocked commitments whose round the simulated drand has reached."""
    due = [
        c
        for c in snapshot.commitments.values()
        if c.reveal_round is not None and c.reveal_round <= drand_round and c.hotkey in snapshot.sealed
    ]
    if not due:
        return snapshot
    commitments = dict(snapshot.commitments)
    sealed = dict(snapshot.sealed)
    revealed = dict(snapshot.revealed)
    for commitment in due:
        del commitments[commitment.hotkey]
        plaintext = sealed.pop(commitment.hotkey)
        entry = RevealedCommitment(hotkey=commitment.hotkey, reveal_block=block, data=plaintext)
        revealed[commitment.hotkey] = (*revealed.get(commitment.hotkey, ()), entry)[-REVEALED_KEPT:]
    return msgspec.structs.replace(snapshot, commitments=commitments, sealed=sealed, revealed=revealed)
