"""The OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

Handlers read the raw body (the service validates it and forwards the same bytes); errors on these
routes use OpenAI's error format so the official SDKs raise their usual exception types. The three POST
routes are also hot routes (`HOT_ROUTES`): a caller known from memory is answered before Litestar's router
by the same `answer()`; Epistula callers and keys not yet cached take the routed handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
from app.inference.backends.base import Endpoint
from app.inference.errors import EXCEPTION_HANDLERS, InferenceError, error_body
from app.inference.router import BackendRouter
from app.inference.schemas import ModelCard, ModelList
from app.inference.service import Completion, InferenceService, build_backends
from app.inference.upstream import UpstreamPool
from app.settings import Settings

log = structlog.get_logger(__name__)

OPT = {"scope": Scope.INFERENCE, "epistula": True}
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
    HotRoute("POST", path, Scope.INFERENCE, serve_inference, epistula=True) for path in ENDPOINTS
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


def inference_router(settings: Settings) -> Router:
    return Router(
        path="/v1",
        route_handlers=[chat_completions, completions, embeddings, list_models, get_model],
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
