"""The OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

Handlers read the raw body (the service validates it and forwards the same bytes); errors on these
routes use OpenAI's error format so the official SDKs raise their usual exception types. The three POST
routes are also hot routes (`HOT_ROUTES`): a caller known from memory is answered before Litestar's router
by the same `answer()`; Epistula callers and keys not yet cached take the routed handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from litestar import Litestar, Request, Router, get, post
from litestar.params import FromPath
from litestar.types import ASGIApp

from app.auth.scopes import Scope
from app.health import ready_checks
from app.http.context import RequestContext, context_of, principal_of
from app.http.hot import HotRequest, HotRoute
from app.http.raw import (
    BodyTooLarge,
    ClientGone,
    EventStream,
    RawAnswer,
    RawResponse,
    json_response,
    read_body,
)
from app.inference.audio import UploadError, receive_upload, remove_file
from app.inference.backends.base import Endpoint
from app.inference.errors import EXCEPTION_HANDLERS, InferenceError, error_body
from app.inference.router import BackendRouter
from app.inference.schemas import TRANSCRIPTION_FIELDS, ErrorBody, ModelCard, ModelList
from app.inference.service import Completion, InferenceService, build_backends
from app.inference.upstream import UpstreamPool
from app.settings import Settings

log = structlog.get_logger(__name__)

OPT = {"scope": Scope.INFERENCE, "epistula": True, "fiber": True, "error_body": ErrorBody}
# What Litestar's `Stream(media_type="text/event-stream")` sent with these headers, kept byte for byte.
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


def _service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


def error_answer(exc: InferenceError) -> RawResponse:
    headers = [(name.lower().encode(), value.encode()) for name, value in exc.headers.items()]
    return json_response(
        exc.status_code, error_body(exc.status_code, exc.message, exc.code, exc.param), headers
    )


async def answer(
    service: InferenceService, context: RequestContext, endpoint: Endpoint, raw: bytes
) -> RawAnswer:
    """Validate, forward and render one inference request: the routed and the hot route's one dispatch.
    Every error is answered here, in OpenAI's format."""
    try:
        body = service.parse(endpoint, raw)
        service.authorize_model(context.principal, body.model)
        if endpoint != "embeddings" and body.stream:
            started = await service.open_stream(endpoint, raw, body)
            if isinstance(started, Completion):
                return json_response(started.status, started.body)

            def record_usage() -> None:
                context.usage = started.usage

            return EventStream(started.events, SSE_HEADERS, on_close=record_usage)
        completion = await service.complete(endpoint, raw, body)
        context.usage = completion.usage
        return json_response(completion.status, completion.body)
    except InferenceError as exc:
        return error_answer(exc)
    except Exception:
        # As the router's `internal_error_handler` does: logged with its traceback, a 500 in OpenAI's format.
        log.exception("inference_unhandled_error", path=context.template)
        return json_response(500, error_body(500, "internal server error", "internal_error"))


async def _dispatch(request: Request, endpoint: Endpoint) -> ASGIApp:
    return await answer(_service(request), context_of(request), endpoint, await request.body())


async def serve_inference(request: HotRequest) -> int:
    """The hot route: the same dispatch, with the body read here."""
    scope = request.scope
    service: InferenceService = request.state.inference
    try:
        raw = await read_body(scope, request.receive, service.settings.inference_max_body_size)
    except ClientGone:
        return 499
    except BodyTooLarge:
        reply: RawAnswer = error_answer(
            InferenceError(413, "Request Entity Too Large", code="request_too_large")
        )
    else:
        reply = await answer(service, request.context, ENDPOINTS[scope["path"]], raw)
    return await reply.respond(request.receive, request.send, (request.context.request_id_header,))


HOT_ROUTES = tuple(
    HotRoute("POST", path, Scope.INFERENCE, serve_inference, epistula=True, fiber=True) for path in ENDPOINTS
)


@post("/chat/completions", opt=OPT, status_code=200, tags=["inference"], summary="Chat completion")
async def chat_completions(request: Request) -> ASGIApp:
    """OpenAI chat completion, streamed as server-sent events when `stream` is true (ending with
    `data: [DONE]`; `stream_options.include_usage` adds the usage chunk). Routed by `model`."""
    return await _dispatch(request, "chat")


@post("/completions", opt=OPT, status_code=200, tags=["inference"], summary="Text completion")
async def completions(request: Request) -> ASGIApp:
    """OpenAI (legacy) text completion, streamed when `stream` is true. Routed by `model`."""
    return await _dispatch(request, "completions")


@post("/embeddings", opt=OPT, status_code=200, tags=["inference"], summary="Embeddings")
async def embeddings(request: Request) -> ASGIApp:
    """OpenAI embeddings (`encoding_format` float or base64). Routed by `model`."""
    return await _dispatch(request, "embeddings")


@get("/models", opt=OPT, tags=["inference"], summary="List models", sync_to_thread=False)
def list_models(request: Request) -> ModelList:
    """Models served by the configured backends (those this caller may use)."""
    models = _service(request).model_list()
    principal = principal_of(request)
    if principal is not None:
        models.data = [card for card in models.data if principal.allows_model(card.id)]
    return models


@get("/models/{model_id:path}", opt=OPT, tags=["inference"], summary="Get a model", sync_to_thread=False)
def get_model(request: Request, model_id: FromPath[str]) -> ModelCard:
    """One model by id (ids may contain slashes, as Hugging Face names do)."""
    service = _service(request)
    model = model_id.lstrip("/")
    service.authorize_model(principal_of(request), model)
    return service.model_card(model)


def _upload_dir(request: Request) -> Path:
    settings: Settings = request.app.state.settings
    return Path(settings.data_dir) / "uploads"


@post(
    "/audio/transcriptions",
    opt=OPT,
    status_code=200,
    tags=["inference"],
    summary="Transcribe audio",
    # The file is streamed to disk and its own limit checked there (PYLON_TASKS_MAX_UPLOAD_SIZE).
    request_max_body_size=None,
)
async def audio_transcriptions(request: Request) -> ASGIApp:
    """OpenAI transcription: multipart `file` (WAV, MP3, FLAC or OGG, streamed to disk, never held in
    memory) and `model`, `language`, `prompt`, `response_format`, `temperature`. Routed by `model`."""
    service = _service(request)
    settings: Settings = request.app.state.settings
    try:
        upload = await receive_upload(
            request.stream(),
            request.headers.get("content-type", ""),
            file_field="file",
            directory=_upload_dir(request),
            max_size=settings.tasks.max_upload_size,
        )
    except UploadError as exc:
        headers = [(b"connection", b"close")] if exc.status == 413 else []
        code = "request_too_large" if exc.status == 413 else "invalid_value"
        return json_response(exc.status, error_body(exc.status, exc.message, code, exc.field), headers)
    try:
        model = upload.fields.get("model", "")
        if not model:
            raise InferenceError(400, "model is required", code="invalid_value", param="model")
        service.authorize_model(principal_of(request), model)
        fields = {name: upload.fields[name] for name in TRANSCRIPTION_FIELDS if name in upload.fields}
        completion = await service.transcribe(model, upload.audio, fields)
        headers = [(b"content-type", completion.content_type.encode())]
        return RawResponse(completion.status, headers, completion.body)
    except InferenceError as exc:
        return error_answer(exc)
    finally:
        remove_file(upload.audio.path)


@post("/audio/speech", opt=OPT, status_code=200, tags=["inference"], summary="Text to speech")
async def audio_speech(request: Request) -> ASGIApp:
    """OpenAI speech: `{"model", "input", "voice", "response_format"?, "speed"?}`; the audio is streamed
    back as the backend sends it, with its content type. Routed by `model`."""
    service = _service(request)
    try:
        raw = await request.body()
        body = service.parse_speech(raw)
        service.authorize_model(principal_of(request), body.model)
        answer = await service.speech(raw, body)
    except InferenceError as exc:
        return error_answer(exc)
    if isinstance(answer, Completion):
        return json_response(answer.status, answer.body)
    # A byte relay like the SSE one: a client that leaves closes the upstream response.
    return EventStream(answer.chunks, [(b"content-type", answer.content_type.encode())])


def inference_router(settings: Settings) -> Router:
    return Router(
        path="/v1",
        route_handlers=[
            chat_completions,
            completions,
            embeddings,
            list_models,
            get_model,
            audio_transcriptions,
            audio_speech,
        ],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=settings.inference.inference_max_body_size,
    )


def inference_lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    """The worker's upstream pool, backends and health checks; registers `/ready`'s `backends` check."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The worker's keep-alive connections to every OpenAI-kind backend (see app/inference/upstream.py).
        pool = UpstreamPool()
        router = BackendRouter(
            build_backends(settings.inference, pool, app.state.get("gateway")),
            cooldown=settings.inference.backend_cooldown,
            health_interval=settings.inference.backend_health_interval,
        )
        try:
            await router.start()
            app.state.inference = InferenceService(router, settings.inference)
            if settings.inference.backends:
                ready_checks(app.state)["backends"] = router.ready_check
            yield
        finally:
            await router.close()
            await pool.close()

    return lifespan
