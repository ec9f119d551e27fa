"""The inference service: validate, pick a backend, fail over, count tokens, report usage.

Controllers hand it the raw body; the CLI uses its router for `pylon backends list`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from app.auth.context import Principal, Usage
from app.http.inputs import InputError, decode_json
from app.inference import metrics
from app.inference.audio import AudioFile
from app.inference.backends.base import (
    AudioStream,
    Backend,
    BackendFailure,
    Endpoint,
    UpstreamClientError,
    UpstreamStream,
)
from app.inference.backends.ollama import OllamaBackend
from app.inference.backends.openai_compatible import OpenAIBackend
from app.inference.errors import InferenceError, error_body
from app.inference.router import BackendRouter, BackendState
from app.inference.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    SpeechRequest,
    UsageCounts,
)
from app.inference.upstream import UpstreamPool
from app.metrics_buffer import BUFFER
from app.settings import InferenceSettings

if TYPE_CHECKING:
    from app.gateway.service import GatewayRuntime

log = structlog.get_logger(__name__)

DECODERS: dict[Endpoint, msgspec.json.Decoder[Any]] = {
    "chat": msgspec.json.Decoder(ChatCompletionRequest),
    "completions": msgspec.json.Decoder(CompletionRequest),
    "embeddings": msgspec.json.Decoder(EmbeddingRequest),
}
SPEECH_DECODER = msgspec.json.Decoder(SpeechRequest)
DONE = b"data: [DONE]\n\n"
CONTENT_ROLES = frozenset({"system", "developer", "user"})


def build_backends(
    settings: InferenceSettings, pool: UpstreamPool, gateway: GatewayRuntime | None = None
) -> list[Backend]:
    """One backend per configured server; the OpenAI kind shares the worker's upstream pool.

    The subnet kind is built by the gateway (app/gateway/), which then finds each one's reference among
    the others; without a gateway (`pylon backends list`) subnet entries are left out.
    """
    backends: list[Backend] = []
    for config in settings.backends:
        if config.kind == "ollama":
            backends.append(OllamaBackend(config))
        elif config.kind == "subnet":
            if gateway is not None:
                backends.append(gateway.subnet_backend(config, pool))
        else:
            backends.append(OpenAIBackend(config, pool))
    if gateway is not None:
        gateway.attach(backends)
    return backends


class Completion(msgspec.Struct, frozen=True):
    """A whole answer: the backend's status and body, and the tokens it consumed."""

    status: int
    body: bytes
    usage: Usage | None = None
    content_type: str = "application/json"
    # The backend that answered (tasks record it).
    backend: str | None = None


class SpeechAnswer(msgspec.Struct, frozen=True):
    """Speech being streamed from `backend`, in `content_type`."""

    content_type: str
    chunks: AsyncGenerator[bytes, None]
    backend: str


class StreamAnswer:
    """A started stream: its events, and once they end (or are cut), the tokens they consumed."""

    def __init__(self) -> None:
        self.events: AsyncGenerator[bytes, None]
        self.usage: Usage | None = None


class InferenceService:
    def __init__(self, router: BackendRouter, settings: InferenceSettings) -> None:
        self.router = router
        self.settings = settings

    # --- validation ---

    def parse(self, endpoint: Endpoint, raw: bytes) -> Any:
        """The body as its Struct, or a 400 naming the offending field; garbage is never forwarded."""
        if not raw:
            raise InferenceError(400, "the request body is empty; send a JSON object", code="invalid_body")
        try:
            # The routes' one body decoder (app/http/inputs.py): UTF-8, no duplicate keys, strict types.
            request = decode_json(DECODERS[endpoint], raw)
        except InputError as exc:
            if exc.malformed:
                raise InferenceError(
                    400,
                    f"the request body is not valid JSON: {exc.message}",
                    code="invalid_json",
                    param=exc.field,
                ) from None
            raise InferenceError(
                400, f"invalid request: {exc.message}", code="invalid_value", param=exc.field
            ) from None
        limit = self.settings.max_tokens_limit
        for name in ("max_tokens", "max_completion_tokens"):
            value = getattr(request, name, None)
            if value is not None and value > limit:
                raise InferenceError(
                    400,
                    f"{name} is {value}; at most {limit} is allowed here",
                    code="invalid_value",
                    param=name,
                )
        if endpoint != "chat":
            items = request.prompt if endpoint == "completions" else request.input
            param = "prompt" if endpoint == "completions" else "input"
            if not isinstance(items, str):
                if not items:
                    raise InferenceError(400, f"{param} must not be empty", code="invalid_value", param=param)
                kinds = {type(item) for item in items}
                if len(kinds) > 1:
                    raise InferenceError(
                        400, f"{param}: mix of strings and token ids", code="invalid_value", param=param
                    )
        if endpoint == "chat":
            for index, message in enumerate(request.messages):
                if message.role in CONTENT_ROLES and message.content is None:
                    raise InferenceError(
                        400,
                        f"messages[{index}]: a {message.role} message needs content",
                        code="invalid_value",
                        param=f"messages[{index}].content",
                    )
        return request

    def authorize_model(self, principal: Principal | None, model: str) -> None:
        if principal is not None and not principal.allows_model(model):
            raise InferenceError(
                403, f"this key may not use the model '{model}'", code="model_not_allowed", param="model"
            )

    # --- models ---

    def model_list(self) -> ModelList:
        return ModelList(data=[ModelCard(id=model) for model in self.router.models()])

    def model_card(self, model: str) -> ModelCard:
        if not self.router.serves(model):
            raise InferenceError(
                404, f"The model '{model}' does not exist", code="model_not_found", param="model"
            )
        return ModelCard(id=model)

    # --- dispatch ---

    async def complete(self, endpoint: Endpoint, raw: bytes, request: Any) -> Completion:
        """A non-streamed answer from the first backend that answers."""
        model: str = request.model
        started = time.perf_counter()
        last: BackendFailure | None = None
        for state in self.router.candidates(model):
            state.in_flight += 1
            try:
                reply = await state.backend.complete(endpoint, raw, request)
            except BackendFailure as failure:
                last = failure
                self._failed(state, failure)
                continue
            except UpstreamClientError as refused:
                BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, endpoint, "client_error"))
                return Completion(refused.status, refused.body)
            finally:
                state.in_flight -= 1
            usage = self._account(model, state.name, endpoint, reply.usage, None)
            BUFFER.observe(
                metrics.child(metrics.DURATION, model, state.name, endpoint), time.perf_counter() - started
            )
            BUFFER.inc(
                metrics.child(
                    metrics.REQUESTS_TOTAL,
                    model,
                    state.name,
                    endpoint,
                    "ok" if reply.status < 400 else "client_error",
                )
            )
            return Completion(reply.status, reply.body, usage)
        raise self._exhausted(model, endpoint, last)

    async def open_stream(self, endpoint: Endpoint, raw: bytes, request: Any) -> StreamAnswer | Completion:
        """Start a stream on the first backend that produces its first event, else the error to answer.

        Nothing reaches the client until a backend has produced an event, so a backend failing before
        that is retried on the next one.
        """
        model: str = request.model
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        started = time.perf_counter()
        last: BackendFailure | None = None
        for state in self.router.candidates(model):
            state.in_flight += 1
            stream: UpstreamStream | None = None
            try:
                stream = await state.backend.open_stream(endpoint, raw, request, include_usage)
                events = aiter(stream)
                try:
                    first: bytes | None = await anext(events)
                except StopAsyncIteration:
                    first = None
            except BackendFailure as failure:
                await self._abandon(state, stream)
                last = failure
                self._failed(state, failure)
                continue
            except UpstreamClientError as refused:
                await self._abandon(state, stream)
                BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, endpoint, "client_error"))
                return Completion(refused.status, refused.body)
            except BaseException:
                # The client left while we waited (cancellation): drop the upstream request too.
                await self._abandon(state, stream)
                raise
            BUFFER.observe(
                metrics.child(metrics.TIME_TO_FIRST_TOKEN, model, state.name, endpoint),
                time.perf_counter() - started,
            )
            answer = StreamAnswer()
            answer.events = self._relay(answer, endpoint, model, state, stream, events, first, started)
            return answer
        raise self._exhausted(model, endpoint, last)

    async def _relay(
        self,
        answer: StreamAnswer,
        endpoint: Endpoint,
        model: str,
        state: BackendState,
        stream: UpstreamStream,
        events: AsyncIterator[bytes],
        first: bytes | None,
        started: float,
    ) -> AsyncGenerator[bytes, None]:
        outcome = "client_disconnected"
        accounted = False
        try:
            if first is not None:
                yield first
                async for event in events:
                    yield event
            outcome = "ok"
            answer.usage = self._account(model, state.name, endpoint, stream.usage, stream)
            accounted = True
            yield DONE
        except BackendFailure as failure:
            # Bytes already went out: no failover now. OpenAI's SDKs raise on an `error` event.
            outcome = "backend_error"
            self._failed(state, failure, failover=False)
            answer.usage = self._account(model, state.name, endpoint, stream.usage, stream)
            accounted = True
            yield (
                b"data: "
                + error_body(502, f"the backend failed mid-stream: {failure.reason}", "backend_error")
                + b"\n\n"
            )
        finally:
            state.in_flight -= 1
            # Closing (not releasing) the upstream response cancels the backend's generation.
            await stream.aclose()
            if not accounted:
                answer.usage = self._account(model, state.name, endpoint, stream.usage, stream)
            BUFFER.observe(
                metrics.child(metrics.DURATION, model, state.name, endpoint), time.perf_counter() - started
            )
            BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, endpoint, outcome))
            if outcome == "client_disconnected":
                log.info("inference_stream_cancelled", model=model, backend=state.name)

    def subnet_of(self, model: str) -> int | None:
        """The subnet serving `model`, when a subnet backend serves it."""
        for state in self.router.states:
            if model in state.models:
                netuid = state.backend.netuid()
                if netuid is not None:
                    return netuid
        return None

    # --- audio ---

    def parse_speech(self, raw: bytes) -> SpeechRequest:
        """The speech body as its Struct, or a 400 naming the field."""
        if not raw:
            raise InferenceError(400, "the request body is empty; send a JSON object", code="invalid_body")
        try:
            return decode_json(SPEECH_DECODER, raw)
        except InputError as exc:
            code = "invalid_json" if exc.malformed else "invalid_value"
            raise InferenceError(400, f"invalid request: {exc.message}", code=code, param=exc.field) from None

    async def transcribe(self, model: str, audio: AudioFile, fields: Mapping[str, str]) -> Completion:
        """A transcription from the first backend for `model` that answers (the file is sent again to the
        next one when a backend fails)."""
        started = time.perf_counter()
        last: BackendFailure | None = None
        for state in self.router.candidates(model):
            state.in_flight += 1
            try:
                reply = await state.backend.transcribe(audio, fields)
            except BackendFailure as failure:
                last = failure
                self._failed(state, failure)
                continue
            except UpstreamClientError as refused:
                BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, "audio", "client_error"))
                return Completion(refused.status, refused.body, backend=state.name)
            finally:
                state.in_flight -= 1
            BUFFER.observe(
                metrics.child(metrics.DURATION, model, state.name, "audio"), time.perf_counter() - started
            )
            BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, "audio", "ok"))
            return Completion(reply.status, reply.body, content_type=reply.content_type, backend=state.name)
        raise self._exhausted(model, "audio", last)

    async def speech(self, raw: bytes, request: SpeechRequest) -> SpeechAnswer | Completion:
        """Speech streamed from the first backend for its model that starts answering."""
        model = request.model
        last: BackendFailure | None = None
        for state in self.router.candidates(model):
            state.in_flight += 1
            try:
                stream = await state.backend.speech(raw, request)
            except BackendFailure as failure:
                state.in_flight -= 1
                last = failure
                self._failed(state, failure)
                continue
            except UpstreamClientError as refused:
                state.in_flight -= 1
                BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, "audio", "client_error"))
                return Completion(refused.status, refused.body, backend=state.name)
            except BaseException:
                state.in_flight -= 1
                raise
            return SpeechAnswer(stream.content_type, self._relay_audio(model, state, stream), state.name)
        raise self._exhausted(model, "audio", last)

    async def _relay_audio(
        self, model: str, state: BackendState, stream: AudioStream
    ) -> AsyncGenerator[bytes, None]:
        started = time.perf_counter()
        outcome = "client_disconnected"
        try:
            async for chunk in stream:
                yield chunk
            outcome = "ok"
        except BackendFailure as failure:
            outcome = "backend_error"
            self._failed(state, failure, failover=False)
            raise
        finally:
            state.in_flight -= 1
            await stream.aclose()
            BUFFER.observe(
                metrics.child(metrics.DURATION, model, state.name, "audio"), time.perf_counter() - started
            )
            BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, state.name, "audio", outcome))

    # --- helpers ---

    async def _abandon(self, state: BackendState, stream: UpstreamStream | None) -> None:
        state.in_flight -= 1
        if stream is not None:
            await stream.aclose()

    def _failed(self, state: BackendState, failure: BackendFailure, failover: bool = True) -> None:
        reason = "busy" if failure.status == 429 else "status_5xx" if failure.status else "unreachable"
        metrics.FAILOVERS_TOTAL.labels(state.name, reason).inc()
        log.warning(
            "backend_request_failed",
            backend=state.name,
            reason=failure.reason,
            failover=failover,
            status=failure.status,
        )
        self.router.failed(state, failure)

    def _exhausted(self, model: str, endpoint: Endpoint, last: BackendFailure | None) -> InferenceError:
        BUFFER.inc(metrics.child(metrics.REQUESTS_TOTAL, model, "none", endpoint, "unavailable"))
        retry_after = max(1, int(self.router.cooldown if last is None or last.cool_down else 1))
        reason = last.reason if last else "no backend answered"
        return InferenceError(
            503,
            f"no backend for '{model}' could answer ({reason}); retry later",
            code="backends_unavailable",
            headers={"Retry-After": str(retry_after)},
        )

    def _account(
        self,
        model: str,
        backend: str,
        endpoint: Endpoint,
        usage: UsageCounts | None,
        stream: UpstreamStream | None,
    ) -> Usage | None:
        """The tokens consumed (counted in the token metrics), as the caller's usage."""
        if usage is not None:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        elif stream is not None:
            # The backend never reported usage (or the stream was cut): count content chunks, ~1 token each.
            prompt, completion = 0, stream.chunks
        else:
            return None
        if prompt:
            BUFFER.inc(metrics.child(metrics.TOKENS_TOTAL, model, backend, "prompt"), prompt)
        if completion:
            BUFFER.inc(metrics.child(metrics.TOKENS_TOTAL, model, backend, "completion"), completion)
        return Usage(model=model, backend=backend, prompt_tokens=prompt, completion_tokens=completion)
