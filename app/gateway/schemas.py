"""Bodies of the gateway routes (and what `pylon gateway ... --json` prints)."""

from __future__ import annotations

import msgspec


class MinerView(msgspec.Struct, frozen=True, kw_only=True):
    """One miner's record: counts, moving averages (score 0-1, latency in seconds), last answer (Unix s)."""

    netuid: int
    hotkey: str
    uid: int
    requests: int
    successes: int
    failures: int
    score: float | None
    latency: float | None
    last_seen: float | None


class MinerList(msgspec.Struct, frozen=True, kw_only=True):
    """A subnet's miners, best score first; `routable` is whether the gateway would call it now."""

    netuid: int
    block: int | None
    miners: list[MinerView]
    routable: list[str]


class FromScoresRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional knobs: the identity that signs (default: the subnet backend's), and the least requests a
    miner needs before its score counts."""

    identity: str | None = None
    min_requests: int = 1


class FromScoresResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The weights job made from the scores (its status: GET /api/v1/weights/jobs/{job_id})."""

    job_id: int
    status: str
    netuid: int
    identity: str
    weights: dict[str, float]
