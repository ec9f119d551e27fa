"""Scoring miners' answers: accuracy against the validator's reference, speed, and how they combine.

The interface is one async method, so a subnet (or the task queue, for its kinds) can plug its own:

    class Scorer(Protocol):
        async def score(self, kind, answers, reference, embed) -> list[float]   # one 0..1 per answer

- `kind`: what was asked: "chat", "completions", "embeddings" (the task queue adds its own, such as
  "transcription", and scores them with e.g. word error rate in its scorer).
- `answers`: each miner's `Answer` (ok, latency, the answer's text or vector).
- `reference`: the reference backend's `Reference` (text or vector), None without one (or when it failed).
- `embed`: turns texts into vectors through the reference's /v1/embeddings; None when it has none.

`PYLON_GATEWAY_SCORER=module:function` names a function taking the `GatewaySettings` and returning a
scorer. The built-in one, `WeightedScorer`, gives a failed answer 0 and otherwise
`accuracy_weight * accuracy + speed_weight * speed` (normalised by the weights' sum), where speed is
`1 / (1 + latency / speed_scale)` and accuracy is, in that order of preference: the cosine similarity of
embeddings (a miner's vector for "embeddings"; the reference's embeddings of both texts otherwise), a
text similarity (difflib's ratio over words) when there is no embedding, and 1 (validity alone) when
there is no reference. Subclass it and override `accuracy` to keep the combination and change the measure.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from app.settings import GatewaySettings, SettingsError

Embed = Callable[[list[str]], Awaitable[list[list[float]] | None]]


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One miner's answer to one request, as the scorer sees it."""

    hotkey: str
    ok: bool
    latency: float
    text: str = ""
    vector: list[float] | None = None
    error: str = ""


class Reference(msgspec.Struct, frozen=True, kw_only=True):
    """The reference backend's answer to the same request."""

    text: str = ""
    vector: list[float] | None = None


class Scorer(Protocol):
    async def score(
        self, kind: str, answers: Sequence[Answer], reference: Reference | None, embed: Embed | None
    ) -> list[float]:
        """A score from 0 to 1 for each answer, in order."""
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity, clamped to 0..1 (opposite or unrelated vectors are equally wrong)."""
    if not a or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return max(0.0, min(1.0, dot / norm)) if norm else 0.0


def text_similarity(a: str, b: str) -> float:
    """How much of two texts' word sequences match (difflib's ratio: 1 identical, 0 nothing shared)."""
    left, right = a.split(), b.split()
    if not left and not right:
        return 1.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


class WeightedScorer:
    """The built-in scorer: accuracy and speed combined by weight (defaults 0.7 and 0.3)."""

    def __init__(
        self, accuracy_weight: float = 0.7, speed_weight: float = 0.3, speed_scale: float = 1.0
    ) -> None:
        total = accuracy_weight + speed_weight
        self.accuracy_weight = accuracy_weight / total
        self.speed_weight = speed_weight / total
        self.speed_scale = speed_scale

    def speed(self, latency: float) -> float:
        return 1.0 / (1.0 + max(0.0, latency) / self.speed_scale)

    async def accuracy(
        self, kind: str, answers: Sequence[Answer], reference: Reference | None, embed: Embed | None
    ) -> list[float]:
        """Accuracy of each ok answer (failed ones are not asked about: their entry is 0)."""
        if reference is None:
            return [1.0 if answer.ok else 0.0 for answer in answers]
        if kind == "embeddings" and reference.vector is not None:
            return [cosine(answer.vector or [], reference.vector) if answer.ok else 0.0 for answer in answers]
        ok = [answer for answer in answers if answer.ok]
        vectors = None
        if embed is not None and ok:
            vectors = await embed([reference.text, *(answer.text for answer in ok)])
        if vectors is not None and len(vectors) == len(ok) + 1:
            by_answer = dict(zip((id(a) for a in ok), vectors[1:], strict=True))
            return [cosine(by_answer[id(a)], vectors[0]) if a.ok else 0.0 for a in answers]
        return [text_similarity(a.text, reference.text) if a.ok else 0.0 for a in answers]

    async def score(
        self, kind: str, answers: Sequence[Answer], reference: Reference | None, embed: Embed | None
    ) -> list[float]:
        accuracies = await self.accuracy(kind, answers, reference, embed)
        return [
            self.accuracy_weight * accuracy + self.speed_weight * self.speed(answer.latency)
            if answer.ok
            else 0.0
            for answer, accuracy in zip(answers, accuracies, strict=True)
        ]


def default_scorer(settings: GatewaySettings) -> Scorer:
    return WeightedScorer(settings.accuracy_weight, settings.speed_weight, settings.speed_scale)


def load_scorer(settings: GatewaySettings) -> Scorer:
    """The scorer `PYLON_GATEWAY_SCORER` names (`module:function(settings) -> Scorer`), else the built-in."""
    if not settings.scorer:
        return default_scorer(settings)
    module_name, _, function_name = settings.scorer.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"PYLON_GATEWAY_SCORER: cannot load {settings.scorer!r}: {exc}") from None
    scorer: Scorer = factory(settings)
    if not callable(getattr(scorer, "score", None)):
        raise SettingsError(f"PYLON_GATEWAY_SCORER: {settings.scorer!r} returned no object with score()")
    return scorer
