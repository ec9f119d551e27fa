"""Any OpenAI-compatible server (vLLM's `vllm serve`, llama.cpp server, TGI), spoken to over Pylon's own
HTTP/1.1 client (app/inference/upstream.py).

The non-streamed hot path forwards the client's bytes unchanged and returns the backend's bytes
unchanged, decoding only `usage` (msgspec skips the rest without building objects). Streams are re-framed
event by event so Pylon can read the final usage chunk, which it always asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx
import msgspec

from app.inference.audio import AudioFile, MultipartBody
from app.inference.backends.base import (
    AudioStream,
    Backend,
    BackendFailure,
    Endpoint,
    UpstreamClientError,
    UpstreamReply,
    UpstreamStream,
)
from app.inference.schemas import StreamChunkEnvelope, UpstreamModelList, UsageCounts, UsageEnvelope
from app.inference.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from app.settings import BackendSettings

PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
_usage_decoder = msgspec.json.Decoder(UsageEnvelope)
_chunk_decoder = msgspec.json.Decoder(StreamChunkEnvelope)
_models_decoder = msgspec.json.Decoder(UpstreamModelList)
_dict_decoder = msgspec.json.Decoder(dict)
_encoder = msgspec.json.Encoder()


def openai_base_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def with_usage_requested(raw: bytes) -> bytes:
    """The body with `stream_options.include_usage` on: Pylon counts tokens even when the client does not."""
    body = _dict_decoder.decode(raw)
    options = body.get("stream_options") or {}
    if options.get("include_usage") is True:
        return raw
    body["stream_options"] = {**options, "include_usage": True}
    return _encoder.encode(body)


class OpenAIBackend(Backend):
    def __init__(self, config: BackendSettings, pool: UpstreamPool) -> None:
        super().__init__(config)
        self.pool = pool
        self.base_url = openai_base_url(config.base_url)
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        connect = config.connect_timeout
        # Request line and headers prepared once; each request only adds Content-Length and the body.
        self.targets = {
            endpoint: pool.target("POST", self.base_url + path, headers, connect_timeout=connect)
            for endpoint, path in PATHS.items()
        }
        self.models_target = pool.target(
            "GET", self.base_url + "/models", {"Accept": "application/json"}, connect_timeout=connect
        )
        # A whole non-streamed answer, and for streams each read, waits at most read_timeout.
        self.timeout = config.read_timeout
        self.probe_timeout = min(config.read_timeout, connect + 5)
        # Audio goes through httpx: its bodies stream from a file (multipart) or to the client, which
        # the JSON-only hot-path client does not do; audio requests are few and long, so its cost is noise.
        self._audio_client: httpx.AsyncClient | None = None

    def _audio(self) -> httpx.AsyncClient:
        if self._audio_client is None:
            headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
            timeout = httpx.Timeout(self.timeout, connect=self.config.connect_timeout)
            self._audio_client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
        return self._audio_client

    async def close(self) -> None:
        if self._audio_client is not None:
            await self._audio_client.aclose()
            self._audio_client = None

    async def transcribe(self, audio: AudioFile, fields: Mapping[str, str]) -> UpstreamReply:
        body = MultipartBody(audio, dict(fields))
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
        try:
            response = await self._audio().post("/audio/transcriptions", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendFailure(f"{type(exc).__name__}: {exc}") from exc
        _raise_for_failure(response.status_code)
        content_type = response.headers.get("content-type", "application/json")
        if response.status_code >= 400:
            raise UpstreamClientError(response.status_code, response.content)
        return UpstreamReply(status=response.status_code, body=response.content, content_type=content_type)

    async def speech(self, raw: bytes, request: msgspec.Struct) -> AudioStream:
        client = self._audio()
        outgoing = client.build_request(
            "POST", "/audio/speech", content=raw, headers={"Content-Type": "application/json"}
        )
        try:
            response = await client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise BackendFailure(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                error = await response.aread()
            except httpx.HTTPError:
                error = b""
            finally:
                await response.aclose()
            _raise_for_failure(response.status_code)
            raise UpstreamClientError(response.status_code, error)
        return HttpxAudioStream(response)

    async def list_models(self) -> list[str]:
        try:
            response = await self.pool.request(self.models_target, read_timeout=self.probe_timeout)
        except UpstreamError as exc:
            raise BackendFailure(str(exc)) from exc
        if response.status != 200:
            raise BackendFailure(f"GET /models answered {response.status}", status=response.status)
        try:
            return [card.id for card in _models_decoder.decode(response.body).data]
        except msgspec.DecodeError as exc:
            raise BackendFailure("GET /models answered something that is not a model list") from exc

    async def complete(self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct) -> UpstreamReply:
        try:
            response = await self.pool.request(self.targets[endpoint], raw, read_timeout=self.timeout)
        except UpstreamError as exc:
            raise BackendFailure(str(exc)) from exc
        status, body = response.status, response.body
        _raise_for_failure(status)
        usage = None
        if status == 200:
            try:
                usage = _usage_decoder.decode(body).usage
            except msgspec.DecodeError as exc:
                raise BackendFailure("the backend answered 200 with a body that is not JSON") from exc
        return UpstreamReply(status=status, body=body, usage=usage)

    async def open_stream(
        self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct, include_usage: bool
    ) -> UpstreamStream:
        body = with_usage_requested(raw)
        try:
            response = await self.pool.request(
                self.targets[endpoint], body, read_timeout=self.timeout, stream=True
            )
        except UpstreamError as exc:
            raise BackendFailure(str(exc)) from exc
        if response.status != 200:
            try:
                error = await response.read()
            except UpstreamError:
                error = b""
            finally:
                response.close()
            _raise_for_failure(response.status)
            raise UpstreamClientError(response.status, error)
        return SSEStream(response, include_usage)


def _raise_for_failure(status: int) -> None:
    if status >= 500:
        raise BackendFailure(f"backend answered {status}", status=status)
    if status == 429:
        raise BackendFailure("backend answered 429 (busy)", status=status, cool_down=False)


class SSEStream(UpstreamStream):
    """Server-sent events from the backend, one complete `data:` event per item."""

    def __init__(self, response: UpstreamResponse, include_usage: bool) -> None:
        self.response = response
        self.include_usage = include_usage
        self.usage: UsageCounts | None = None
        self.chunks = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        buffer = b""
        data: list[bytes] = []
        try:
            async for piece in self.response:
                buffer += piece
                # Events end with a blank line; servers use \n or \r\n (sse-starlette does the latter).
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.rstrip(b"\r")
                    if line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
                    elif not line and data:
                        event = self._event(b"\n".join(data))
                        data = []
                        if event is not None:
                            yield event
        except UpstreamError as exc:
            raise BackendFailure(f"stream broke: {exc}") from exc
        if data:
            event = self._event(b"\n".join(data))
            if event is not None:
                yield event

    def _event(self, payload: bytes) -> bytes | None:
        if payload == b"[DONE]":
            return None
        if b'"usage"' in payload:
            try:
                chunk = _chunk_decoder.decode(payload)
            except msgspec.DecodeError:
                chunk = None
            if chunk is not None and chunk.usage is not None:
                self.usage = chunk.usage
                # The usage-only chunk was asked for by Pylon, not the client: keep it to ourselves.
                if not chunk.choices and not self.include_usage:
                    return None
            if chunk is not None and chunk.choices:
                self.chunks += 1
        else:
            self.chunks += 1
        return b"data: " + payload + b"\n\n"

    async def aclose(self) -> None:
        # An unfinished stream drops its connection (never pooled), so the backend stops generating.
        self.response.close()


class HttpxAudioStream(AudioStream):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.content_type = response.headers.get("content-type", "application/octet-stream")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise BackendFailure(f"stream broke: {exc}") from exc

    async def aclose(self) -> None:
        await self.response.aclose()
