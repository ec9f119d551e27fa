"""Wire shapes of the weights API (and of `pylon weights ... --json`)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

import msgspec

JobStatus = Literal["pending", "running", "set", "committed", "failed", "expired", "superseded"]
# Longest hotkey accepted: an ss58 address is 48 characters; anything much longer is not a hotkey.
MAX_HOTKEY_LENGTH = 64
# A generous absolute cap on one PUT (subtensor subnets hold at most 4096 uids); the body size bounds it too.
MAX_WEIGHTS = 16_384
SCHEDULED_DETAIL = "weights update scheduled"


class SetWeightsRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`{"weights": {hotkey: weight}}`: any non-negative numbers; Pylon normalises them as subtensor does."""

    weights: dict[str, float]


class WeightsValidationError(ValueError):
    """The body is well-formed JSON but not a weights map Pylon can apply; `extra` says which entries."""

    def __init__(self, message: str, extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.extra = extra or {}


def validate_weights(weights: dict[str, float]) -> None:
    """Reject what no chain would take: an empty map, blank hotkeys, non-finite or negative weights, all
    zero, or more than `MAX_WEIGHTS` entries. More entries than the subnet has neurons is fine: a validator
    one block behind still names hotkeys that just left, and those are skipped (`skipped_hotkeys`)."""
    if not weights:
        raise WeightsValidationError("weights must not be empty: send at least one {hotkey: weight}")
    blank = [hotkey for hotkey in weights if not hotkey.strip() or len(hotkey) > MAX_HOTKEY_LENGTH]
    if blank:
        raise WeightsValidationError(
            f"hotkeys must be non-blank strings of at most {MAX_HOTKEY_LENGTH} characters",
            {"hotkeys": blank[:10]},
        )
    not_finite = [hotkey for hotkey, weight in weights.items() if not math.isfinite(weight)]
    if not_finite:
        raise WeightsValidationError("weights must be finite numbers", {"hotkeys": not_finite[:10]})
    negative = [hotkey for hotkey, weight in weights.items() if weight < 0]
    if negative:
        raise WeightsValidationError("weights must not be negative", {"hotkeys": negative[:10]})
    if not any(weight > 0 for weight in weights.values()):
        raise WeightsValidationError(
            "at least one weight must be above 0 (all-zero weights cannot be normalised)"
        )
    if len(weights) > MAX_WEIGHTS:
        raise WeightsValidationError(
            f"{len(weights)} weights sent; at most {MAX_WEIGHTS} are accepted",
            {"count": len(weights), "max": MAX_WEIGHTS},
        )


class SetWeightsResponse(msgspec.Struct, kw_only=True):
    """202: the job is stored; `detail` and `count` are what bittensor-pylon's client reads."""

    job_id: int
    status: JobStatus
    netuid: int
    identity: str
    count: int
    skipped_hotkeys: list[str]
    detail: str = SCHEDULED_DETAIL


class WeightsJobView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One apply-weights job as stored; `weights` only in the single-job read."""

    id: int
    identity: str
    netuid: int
    hotkey: str
    status: JobStatus
    count: int
    skipped_hotkeys: list[str]
    attempts: int
    created_at: datetime
    updated_at: datetime
    mode: Literal["set", "commit"] | None = None
    last_error: str | None = None
    created_block: int | None = None
    epoch_end_block: int | None = None
    tempo: int | None = None
    applied_block: int | None = None
    extrinsic_hash: str | None = None
    reveal_round: int | None = None
    superseded_by: int | None = None
    next_attempt_at: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    weights: dict[str, float] | None = None


class WeightsJobList(msgspec.Struct, kw_only=True):
    jobs: list[WeightsJobView]


class LastWeights(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What was last set or committed for an identity on a subnet, and at which block."""

    job_id: int
    identity: str
    netuid: int
    status: Literal["set", "committed"]
    block: int | None
    extrinsic_hash: str | None
    weights: dict[str, float]
    skipped_hotkeys: list[str]
    applied_at: datetime | None
    reveal_round: int | None = None
