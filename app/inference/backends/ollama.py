"""Ollama through its own client (`ollama.AsyncClient`), translated to and from the OpenAI wire format.

Chat maps to `/api/chat`, text completions to `/api/generate`, embeddings to `/api/embed`; NDJSON streams
become OpenAI chunks. Token counts come from Ollama's `prompt_eval_count` and `eval_count`.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import ollama

from app.inference.backends.base import (
    Backend,
    BackendFailure,
    Endpoint,
    UpstreamClientError,
    UpstreamReply,
    UpstreamStream,
)
from app.inference.errors import error_body
from app.inference.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    SamplingFields,
    UsageCounts,
)
from app.settings import BackendSettings

_encoder = msgspec.json.Encoder()
ROLES = {"developer": "system", "function": "tool"}


def _failure(exc: BaseException) -> Exception:
    """Map the ollama client's errors: unreachable or 5xx → retry elsewhere; 4xx → the client's fault."""
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code >= 500 or exc.status_code == -1:
            return BackendFailure(f"ollama answered {exc.status_code}: {exc.error}", status=exc.status_code)
        if exc.status_code == 429:
            return BackendFailure("ollama answered 429 (busy)", status=429, cool_down=False)
        code = "model_not_found" if exc.status_code == 404 else None
        return UpstreamClientError(exc.status_code, error_body(exc.status_code, str(exc.error), code))
    if isinstance(exc, httpx.TimeoutException):
        return BackendFailure("timed out")
    if isinstance(exc, ConnectionError):
        return BackendFailure("cannot connect to the Ollama server")
    return BackendFailure(f"{type(exc).__name__}: {exc}")


CLIENT_ERRORS = (ollama.ResponseError, ConnectionError, httpx.HTTPError)


def _options(request: SamplingFields, max_tokens: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            options[name] = value
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if request.stop is not None:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else request.stop
    return options


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": ROLES.get(message.role, message.role)}
    images: list[str] = []
    if isinstance(message.content, list):
        texts = []
        for part in message.content:
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                # Ollama takes base64 images only; a data: URL carries one.
                if url.startswith("data:") and "," in url:
                    images.append(url.split(",", 1)[1])
        out["content"] = "".join(texts)
    else:
        out["content"] = message.content or ""
    if images:
        out["images"] = images
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            function = call.get("function") or {}
            arguments = function.get("arguments") or "{}"
            if isinstance(arguments, str):
                try:
                    arguments = msgspec.json.decode(arguments)
                except msgspec.DecodeError:
                    arguments = {}
            calls.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
        out["tool_calls"] = calls
    return out


def _format(response_format: dict[str, Any] | None) -> Any:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    return None


def _finish_reason(done_reason: str | None, tool_calls: bool = False) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(prompt: int | None, completion: int | None) -> UsageCounts:
    prompt, completion = prompt or 0, completion or 0
    return UsageCounts(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _usage_dict(usage: UsageCounts) -> dict[str, int]:
    return msgspec.to_builtins(usage)


def _tool_calls(message: Any) -> list[dict[str, Any]] | None:
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": call.function.name,
                "arguments": _encoder.encode(call.function.arguments).decode(),
            },
        }
        for call in calls
    ]


def _bad_request(message: str, param: str | None = None) -> UpstreamClientError:
    return UpstreamClientError(400, error_body(400, message, "unsupported_parameter", param))


class OllamaBackend(Backend):
    def __init__(self, config: BackendSettings) -> None:
        super().__init__(config)
        self.client: ollama.AsyncClient | None = None

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        self.client = ollama.AsyncClient(
            host=self.config.base_url.rstrip("/"),
            timeout=httpx.Timeout(self.config.read_timeout, connect=self.config.connect_timeout),
            headers=headers,
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @property
    def _client(self) -> ollama.AsyncClient:
        if self.client is None:
            raise BackendFailure("backend not started")
        return self.client

    async def list_models(self) -> list[str]:
        try:
            listing = await self._client.list()
        except CLIENT_ERRORS as exc:
            failure = _failure(exc)
            raise failure if isinstance(failure, BackendFailure) else BackendFailure(str(failure)) from exc
        return [model.model for model in listing.models if model.model]

    # --- requests ---

    def _chat_kwargs(self, request: ChatCompletionRequest) -> dict[str, Any]:
        if request.n not in (None, 1):
            raise _bad_request("ollama backends answer one choice per request (n must be 1)", "n")
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(message) for message in request.messages],
            "options": _options(request, request.max_completion_tokens or request.max_tokens),
        }
        if request.tools:
            kwargs["tools"] = request.tools
        response_format = _format(request.response_format)
        if response_format is not None:
            kwargs["format"] = response_format
        return kwargs

    def _generate_kwargs(self, request: CompletionRequest, prompt: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "prompt": prompt,
            "options": _options(request, request.max_tokens),
        }
        if request.suffix:
            kwargs["suffix"] = request.suffix
        return kwargs

    @staticmethod
    def _prompts(request: CompletionRequest) -> list[str]:
        prompt = request.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(item, str) for item in prompt):
            return list(prompt)  # type: ignore[arg-type]
        raise _bad_request("ollama backends take text prompts, not token ids", "prompt")

    async def complete(self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct) -> UpstreamReply:
        try:
            if endpoint == "chat":
                assert isinstance(request, ChatCompletionRequest)
                return await self._chat(request)
            if endpoint == "completions":
                assert isinstance(request, CompletionRequest)
                return await self._generate(request)
            assert isinstance(request, EmbeddingRequest)
            return await self._embed(request)
        except CLIENT_ERRORS as exc:
            raise _failure(exc) from exc

    async def _chat(self, request: ChatCompletionRequest) -> UpstreamReply:
        response = await self._client.chat(**self._chat_kwargs(request), stream=False)
        usage = _usage(response.prompt_eval_count, response.eval_count)
        tool_calls = _tool_calls(response.message)
        message: dict[str, Any] = {"role": "assistant", "content": response.message.content or ""}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish_reason(response.done_reason, bool(tool_calls)),
                    "logprobs": None,
                }
            ],
            "usage": _usage_dict(usage),
        }
        return UpstreamReply(status=200, body=_encoder.encode(body), usage=usage)

    async def _generate(self, request: CompletionRequest) -> UpstreamReply:
        choices = []
        prompt_tokens = completion_tokens = 0
        for index, prompt in enumerate(self._prompts(request)):
            response = await self._client.generate(**self._generate_kwargs(request, prompt), stream=False)
            prompt_tokens += response.prompt_eval_count or 0
            completion_tokens += response.eval_count or 0
            choices.append(
                {
                    "index": index,
                    "text": response.response,
                    "finish_reason": _finish_reason(response.done_reason),
                    "logprobs": None,
                }
            )
        usage = _usage(prompt_tokens, completion_tokens)
        body = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": choices,
            "usage": _usage_dict(usage),
        }
        return UpstreamReply(status=200, body=_encoder.encode(body), usage=usage)

    async def _embed(self, request: EmbeddingRequest) -> UpstreamReply:
        inputs = request.input
        if not isinstance(inputs, str) and not all(isinstance(item, str) for item in inputs):
            raise _bad_request("ollama backends embed text, not token ids", "input")
        kwargs: dict[str, Any] = {"model": request.model, "input": inputs}
        if request.dimensions is not None:
            kwargs["dimensions"] = request.dimensions
        response = await self._client.embed(**kwargs)
        data = []
        for index, vector in enumerate(response.embeddings):
            embedding: Any = list(vector)
            if request.encoding_format == "base64":
                # OpenAI's base64 form: little-endian float32, what the SDK asks for by default.
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = _usage(response.prompt_eval_count, 0)
        body = {"object": "list", "data": data, "model": request.model, "usage": _usage_dict(usage)}
        return UpstreamReply(status=200, body=_encoder.encode(body), usage=usage)

    # --- streams ---

    async def open_stream(
        self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct, include_usage: bool
    ) -> UpstreamStream:
        if endpoint == "chat":
            assert isinstance(request, ChatCompletionRequest)
            parts = await self._open(self._client.chat(**self._chat_kwargs(request), stream=True))
            stream: OllamaStream = OllamaChatStream(parts, request.model, include_usage)
        elif endpoint == "completions":
            assert isinstance(request, CompletionRequest)
            prompts = self._prompts(request)
            if len(prompts) != 1:
                raise _bad_request("ollama backends stream one prompt at a time", "prompt")
            parts = await self._open(
                self._client.generate(**self._generate_kwargs(request, prompts[0]), stream=True)
            )
            stream = OllamaGenerateStream(parts, request.model, include_usage)
        else:
            raise _bad_request("embeddings cannot be streamed", "stream")
        # The request is only sent on the first read: read it now so failures happen before anything is
        # streamed to the client, where the router can still try another backend.
        await stream.prefetch()
        return stream

    @staticmethod
    async def _open(call: Any) -> AsyncIterator[Any]:
        try:
            return await call
        except CLIENT_ERRORS as exc:
            raise _failure(exc) from exc


class OllamaStream(UpstreamStream):
    object_name = ""

    def __init__(self, parts: AsyncIterator[Any], model: str, include_usage: bool) -> None:
        self.parts = parts
        self.model = model
        self.include_usage = include_usage
        self.usage: UsageCounts | None = None
        self.chunks = 0
        self.first: Any = None
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    async def prefetch(self) -> None:
        try:
            self.first = await anext(self.parts)
        except StopAsyncIteration:
            self.first = None
        except CLIENT_ERRORS as exc:
            raise _failure(exc) from exc

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    def _frame(self, choices: list[dict[str, Any]], usage: UsageCounts | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = _usage_dict(usage)
        return b"data: " + _encoder.encode(chunk) + b"\n\n"

    async def _parts(self) -> AsyncIterator[Any]:
        if self.first is not None:
            yield self.first
        try:
            async for part in self.parts:
                yield part
        except CLIENT_ERRORS as exc:
            raise _failure(exc) from exc

    async def _events(self) -> AsyncIterator[bytes]:
        raise NotImplementedError
        yield b""  # pragma: no cover

    def _finish(self, part: Any) -> UsageCounts:
        self.usage = _usage(part.prompt_eval_count, part.eval_count)
        return self.usage

    async def aclose(self) -> None:
        # Closing the generator leaves the client's `async with stream(...)`: the connection is dropped.
        aclose = getattr(self.parts, "aclose", None)
        if aclose is not None:
            await aclose()


class OllamaChatStream(OllamaStream):
    object_name = "chat.completion.chunk"

    async def _events(self) -> AsyncIterator[bytes]:
        first = True
        async for part in self._parts():
            delta: dict[str, Any] = {"content": part.message.content or ""}
            if first:
                delta["role"] = "assistant"
                first = False
            tool_calls = _tool_calls(part.message)
            if tool_calls:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tool_calls)]
            if delta.get("content") or len(delta) > 1:
                self.chunks += 1
                yield self._frame([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])
            if part.done:
                usage = self._finish(part)
                reason = _finish_reason(part.done_reason, bool(tool_calls))
                yield self._frame([{"index": 0, "delta": {}, "finish_reason": reason, "logprobs": None}])
                if self.include_usage:
                    yield self._frame([], usage)


class OllamaGenerateStream(OllamaStream):
    object_name = "text_completion"

    def __init__(self, parts: AsyncIterator[Any], model: str, include_usage: bool) -> None:
        super().__init__(parts, model, include_usage)
        self.id = f"cmpl-{uuid.uuid4().hex}"

    async def _events(self) -> AsyncIterator[bytes]:
        async for part in self._parts():
            if part.response:
                self.chunks += 1
                yield self._frame(
                    [{"index": 0, "text": part.response, "finish_reason": None, "logprobs": None}]
                )
            if part.done:
                usage = self._finish(part)
                reason = _finish_reason(part.done_reason)
                yield self._frame([{"index": 0, "text": "", "finish_reason": reason, "logprobs": None}])
                if self.include_usage:
                    yield self._frame([], usage)
