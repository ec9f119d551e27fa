"""Reading miners' (and the reference's) OpenAI answers: validity, the text or vector to score, usage."""

from __future__ import annotations

import base64
import struct

import msgspec

from app.gateway.scoring import Reference
from app.inference.backends.base import Endpoint
from app.inference.schemas import UsageCounts


class _Message(msgspec.Struct, kw_only=True):
    content: str | None = None


class _Choice(msgspec.Struct, kw_only=True):
    message: _Message | None = None
    delta: _Message | None = None
    text: str | None = None


class _Embedding(msgspec.Struct, kw_only=True):
    embedding: list[float] | str


class _Body(msgspec.Struct, kw_only=True):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    data: list[_Embedding] = msgspec.field(default_factory=list)
    usage: UsageCounts | None = None


_decoder = msgspec.json.Decoder(_Body)


class Parsed(msgspec.Struct, frozen=True, kw_only=True):
    text: str = ""
    vector: list[float] | None = None
    usage: UsageCounts | None = None


class InvalidAnswer(ValueError):
    """A 200 whose body is not the endpoint's answer."""


def _vector(value: list[float] | str) -> list[float]:
    if isinstance(value, list):
        return value
    raw = base64.b64decode(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def parse_answer(endpoint: Endpoint, body: bytes) -> Parsed:
    """The answer's text (chat, completions) or first vector (embeddings); InvalidAnswer if there is none."""
    try:
        decoded = _decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:
        raise InvalidAnswer(f"not an OpenAI answer: {exc}") from None
    if endpoint == "embeddings":
        if not decoded.data:
            raise InvalidAnswer("no embedding in the answer")
        try:
            return Parsed(vector=_vector(decoded.data[0].embedding), usage=decoded.usage)
        except (ValueError, struct.error) as exc:
            raise InvalidAnswer(f"unreadable embedding: {exc}") from None
    if not decoded.choices:
        raise InvalidAnswer("no choices in the answer")
    choice = decoded.choices[0]
    text = choice.message.content if endpoint == "chat" and choice.message else choice.text
    if text is None:
        raise InvalidAnswer("the first choice has no content")
    return Parsed(text=text, usage=decoded.usage)


def parse_vectors(body: bytes) -> list[list[float]]:
    decoded = _decoder.decode(body)
    return [_vector(item.embedding) for item in decoded.data]


def stream_text(events: list[bytes]) -> str:
    """The content of streamed `data: {...}` events, joined."""
    parts: list[str] = []
    for event in events:
        payload = event[5:].strip() if event.startswith(b"data:") else event.strip()
        try:
            decoded = _decoder.decode(payload)
        except (msgspec.DecodeError, ValueError):
            continue
        for choice in decoded.choices[:1]:
            if choice.delta is not None and choice.delta.content:
                parts.append(choice.delta.content)
            elif choice.text:
                parts.append(choice.text)
    return "".join(parts)


def reference_of(endpoint: Endpoint, body: bytes) -> Reference:
    parsed = parse_answer(endpoint, body)
    return Reference(text=parsed.text, vector=parsed.vector)
