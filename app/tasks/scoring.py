"""How good a task's answer is: word error rate, text similarity, and the hook into miner records.

Pure functions (no I/O) for the three kinds' accuracy against the validator's reference:
- transcription: 1 - WER of the answer against the reference's transcript of the same audio;
- speech: the reference transcribes the answer's audio, and 1 - WER against the text that was asked for;
- summaries: similarity (ROUGE-1 F1 over words) to the reference's summary.
The combined score is 70% accuracy and 30% speed, as the subnet's validator weighs them.

`ScoreSink` is where scores leave the task worker: the default keeps them on the task only; the subnet
gateway's miner records implement it (wired at merge) so weights from scores include task answers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Protocol

import msgspec

ACCURACY_WEIGHT = 0.7
SPEED_WEIGHT = 0.3
_WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation (Unicode-normalised), as WER tools normalise."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref_word != hyp_word),
            )
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference` (0 is perfect; can pass 1 with insertions).
    An empty reference: 0 for an empty hypothesis, else 1."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def wer_accuracy(reference: str, hypothesis: str) -> float:
    return max(0.0, 1.0 - wer(reference, hypothesis))


def similarity(reference: str, candidate: str) -> float:
    """ROUGE-1 F1: overlap of word counts, between 0 and 1 (1 for the same words)."""
    ref, cand = Counter(words(reference)), Counter(words(candidate))
    if not ref and not cand:
        return 1.0
    overlap = sum((ref & cand).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(cand.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def speed_score(seconds: float, timeout: float) -> float:
    """1 for an instant answer, falling linearly to 0 at the kind's timeout."""
    if timeout <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - seconds / timeout))


def combined(accuracy: float, speed: float) -> float:
    return ACCURACY_WEIGHT * accuracy + SPEED_WEIGHT * speed


class TaskScore(msgspec.Struct, frozen=True, kw_only=True):
    """One answer's scores, kept on the task and handed to the sink."""

    kind: str
    model: str
    backend: str | None
    miner: str | None
    accuracy: float | None
    speed: float
    score: float | None
    seconds: float


class ScoreSink(Protocol):
    """Where task scores go besides the task row (the gateway's miner records implement this)."""

    async def record(self, score: TaskScore) -> None: ...


class KeepOnTask:
    """The default sink: scores stay on the task only."""

    async def record(self, score: TaskScore) -> None:
        return None
