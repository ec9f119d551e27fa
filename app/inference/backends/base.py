"""The interface every backend kind implements, and the failures that make the router try the next one."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from typing import Literal

import msgspec

from app.inference.audio import AudioFile
from app.inference.schemas import UsageCounts
from app.settings import BackendSettings

# "audio": transcriptions and speech (metrics label; their own Backend methods).
Endpoint = Literal["chat", "completions", "embeddings", "audio"]


class BackendFailure(Exception):
    """The backend could not answer (connect error, timeout, 5xx): the router retries elsewhere.

    `cool_down` is False for a backend that is up but busy (429): it is skipped for this request only.
    """

    def __init__(self, reason: str, *, status: int | None = None, cool_down: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.cool_down = cool_down


class UpstreamClientError(Exception):
    """The backend refused the request itself (4xx): its answer goes back to the client as it is."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"backend answered {status}")
        self.status = status
        self.body = body


class UpstreamReply(msgspec.Struct, kw_only=True):
    """A whole (non-streamed) answer: the bytes go to the client as they are."""

    status: int
    body: bytes
    usage: UsageCounts | None = None
    content_type: str = "application/json"


class UpstreamStream(abc.ABC):
    """An answer being streamed: server-sent events already framed as `data: {...}\\n\\n`.

    The final `data: [DONE]` is not among them (the service adds it once usage is recorded). `usage` is
    filled when the backend reports it; `chunks` counts content events, the fallback count of tokens.
    """

    usage: UsageCounts | None = None
    chunks: int = 0

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop reading and drop the upstream connection (the client went away or the stream ended)."""


class AudioStream(abc.ABC):
    """Speech being streamed back: the backend's status was 200; `content_type` is what it sent."""

    content_type: str = "application/octet-stream"

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop reading and drop the upstream connection."""


def audio_unsupported(kind: str, what: str) -> UpstreamClientError:
    body = msgspec.json.encode(
        {
            "error": {
                "message": f"backends of kind {kind!r} do not serve {what}",
                "type": "invalid_request_error",
                "code": "unsupported_endpoint",
                "param": None,
            }
        }
    )
    return UpstreamClientError(400, body)


class Backend(abc.ABC):
    """One configured model server."""

    def __init__(self, config: BackendSettings) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections (called once per worker from the lifespan hook)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections."""

    @abc.abstractmethod
    async def list_models(self) -> list[str]:
        """The models the server says it serves; raises BackendFailure when it cannot be reached."""

    @abc.abstractmethod
    async def complete(self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct) -> UpstreamReply:
        """A non-streamed chat/completion/embedding. `raw` is the client's validated body."""

    @abc.abstractmethod
    async def open_stream(
        self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct, include_usage: bool
    ) -> UpstreamStream:
        """Start a streamed answer; returns once the backend accepted it (status known), else raises."""

    def netuid(self) -> int | None:
        """The subnet whose miners answer for this backend; None for a model server (the subnet kind
        overrides it, so task stats can show the serving subnet's miners and stake)."""
        return None

    async def transcribe(self, audio: AudioFile, fields: Mapping[str, str]) -> UpstreamReply:
        """OpenAI's `/audio/transcriptions`: the file streamed upstream as multipart with `fields` (model,
        language, prompt, response_format, temperature). Kinds without audio refuse it (400)."""
        raise audio_unsupported(self.kind, "/v1/audio/transcriptions")

    async def speech(self, raw: bytes, request: msgspec.Struct) -> AudioStream:
        """OpenAI's `/audio/speech`: `raw` is the client's validated JSON body; the audio comes back as a
        stream. Kinds without audio refuse it (400)."""
        raise audio_unsupported(self.kind, "/v1/audio/speech")
