"""What the dashboard's JSON routes answer: views over the features' own Structs, shaped for a page."""

from __future__ import annotations

import datetime as dt

import msgspec

from app.chain.client import BlockInfo
from app.inference.schemas import BackendStatus
from app.keys.schemas import KeyStatus, UsageDay, UsageTotals
from app.weights.schemas import JobStatus, WeightsJobView


class Overview(msgspec.Struct, kw_only=True):
    """Who is signed in and where the chain is: the header of every page (and the login check)."""

    version: str
    principal: str
    netuid: int
    head: BlockInfo | None
    # Seconds since the head watcher last saw a new block; None before the first one.
    head_age: float | None
    stale: bool


class NeuronRow(msgspec.Struct, kw_only=True):
    """One metagraph table row (the neuron's fields a page shows, the axon as `ip:port`)."""

    uid: int
    hotkey: str
    coldkey: str
    stake: float
    trust: float
    incentive: float
    emission: float
    dividends: float
    validator_permit: bool
    active: bool
    axon: str


class MetagraphTable(msgspec.Struct, kw_only=True):
    """The subnet's neurons at the latest cached block, ordered by uid."""

    netuid: int
    block: BlockInfo
    stale: bool
    neurons: list[NeuronRow]


class WeightsTimeline(msgspec.Struct, kw_only=True):
    """The newest weights jobs (without their weights) and how many of them ended in each status."""

    jobs: list[WeightsJobView]
    counts: dict[JobStatus, int]


class KeyUsageSeries(msgspec.Struct, kw_only=True):
    """One key's usage since the report's `since`: totals and the days it was used."""

    id: str
    name: str
    status: KeyStatus
    scopes: list[str]
    totals: UsageTotals
    days: list[UsageDay]


class UsageOverview(msgspec.Struct, kw_only=True):
    """Every key's usage per UTC day, and the sum over all keys for each day since `since`."""

    since: dt.date
    keys: list[KeyUsageSeries]
    # One entry per day from `since` to today, zeros included, so a chart's axis has no gaps.
    days: list[UsageDay]


class BackendsHealth(msgspec.Struct, kw_only=True):
    """What this worker's inference router knows of each backend (empty when none is configured)."""

    backends: list[BackendStatus]
