"""OpenAI wire shapes: what Pylon validates on the way in and the few fields it reads on the way back.

Request Structs deliberately accept unknown fields (no `forbid_unknown_fields`): OpenAI adds parameters
often and servers add their own (vLLM's `top_k`, `guided_json`, llama.cpp's `mirostat_mode`), and a
gateway that refused them would break clients that work against the backend directly. The fields Pylon
knows are typed and bounded, so garbage in them never reaches a backend; the request is forwarded as the
client sent it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class ChatMessage(msgspec.Struct, kw_only=True):
    role: Role
    # A string, a list of content parts (text, image_url, ...), or null for assistant tool calls.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class SamplingFields(msgspec.Struct, kw_only=True):
    """Parameters shared by chat and text completions."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(SamplingFields, kw_only=True):
    # A string, or a list: of strings (a batch), of token ids, or of token-id lists. Token ids are passed
    # only to OpenAI-kind backends; msgspec cannot tell list types apart in a union, so items are
    # checked by the service.
    prompt: str | list[str | int | list[int]]
    suffix: str | None = None
    echo: bool | None = None


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None


# --- what Pylon reads from a backend's answer (msgspec skips every other field unparsed) ---


class UsageCounts(msgspec.Struct, kw_only=True):
    prompt_tokens: NonNegativeInt = 0
    completion_tokens: NonNegativeInt = 0
    total_tokens: NonNegativeInt = 0


class UsageEnvelope(msgspec.Struct, kw_only=True):
    usage: UsageCounts | None = None


class ChunkChoiceDelta(msgspec.Struct, kw_only=True):
    content: str | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    delta: ChunkChoiceDelta | None = None
    text: str | None = None


class StreamChunkEnvelope(msgspec.Struct, kw_only=True):
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: UsageCounts | None = None


# --- responses Pylon builds itself ---


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "pylon"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class UpstreamModelList(msgspec.Struct, kw_only=True):
    data: list[ModelCard] = msgspec.field(default_factory=list)


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """OpenAI's error body: the official SDKs read `error.message` from it."""

    error: ErrorDetail


class BackendStatus(msgspec.Struct, kw_only=True):
    """One backend as `/ready` and `pylon backends list` show it (never its API key)."""

    name: str
    kind: str
    base_url: str
    healthy: bool
    models: list[str]
    in_flight: int = 0
    weight: float = 1.0
    last_error: str = ""
    # Seconds until a failed backend may be probed back into service; 0 when healthy.
    cooldown_remaining: float = 0.0


class BackendList(msgspec.Struct, kw_only=True):
    backends: list[BackendStatus]


class SpeechRequest(msgspec.Struct, kw_only=True):
    """OpenAI's `/v1/audio/speech` body (unknown fields pass through, as on the other routes)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    voice: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | dict[str, Any] = "alloy"
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] | None = None
    instructions: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


# Form fields of `/v1/audio/transcriptions` forwarded upstream beside the file.
TRANSCRIPTION_FIELDS = ("model", "language", "prompt", "response_format", "temperature")
