"""Task API bodies: what callers send (strict) and what they read back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Priority = Literal["high", "normal", "low"]
TaskKind = Literal["transcription", "tts", "summarization"]
TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
Language = Annotated[str, msgspec.Meta(min_length=2, max_length=16, description="ISO 639-1 code, e.g. en")]


class TTSRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    source_language: Language
    priority: Priority = "normal"
    voice: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class SummarizationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=50, max_length=50_000)]
    source_language: Language
    priority: Priority = "normal"


class TaskAccepted(msgspec.Struct, kw_only=True):
    task_id: int
    kind: TaskKind
    status: TaskStatus
    priority: Priority
    model: str
    # Where to poll.
    url: str


class TaskTimings(msgspec.Struct, kw_only=True):
    # Unix seconds.
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    # Seconds waiting before the first claim, and from submission to the final status.
    queued_seconds: float | None = None
    total_seconds: float | None = None


class TaskResult(msgspec.Struct, kw_only=True):
    content_type: str
    # Text answers (transcripts, summaries) inline; audio through `url`.
    text: str | None = None
    size: int | None = None
    url: str


class TaskView(msgspec.Struct, kw_only=True):
    id: int
    kind: TaskKind
    status: TaskStatus
    priority: Priority
    source_language: str
    model: str
    attempts: int
    max_attempts: int
    timings: TaskTimings
    voice: str | None = None
    last_error: str | None = None
    # Who answered (the backend; the miner's hotkey and its scores when a subnet served it).
    backend: str | None = None
    miner: str | None = None
    scores: dict[str, Any] | None = None
    result: TaskResult | None = None


class TaskList(msgspec.Struct, kw_only=True):
    tasks: list[TaskView]


class SubnetStats(msgspec.Struct, kw_only=True):
    netuid: int
    miners_total: int
    miners_available: int
    total_stake: float
    block: int


class TaskStats(msgspec.Struct, kw_only=True):
    # Counts by status (pending, running, completed, failed, cancelled) over the tasks still kept.
    counts: dict[str, int]
    # Pending tasks per priority.
    queue: dict[str, int]
    queue_size: int
    # Per kind: the model it is routed to and, when that model is served by a subnet, the subnet.
    routes: dict[str, str]
    subnets: dict[str, SubnetStats]
