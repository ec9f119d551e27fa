"""The OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

Handlers read the raw body (the service validates it and forwards the same bytes); errors on these
routes use OpenAI's error format so the official SDKs raise their usual exception types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.response import Stream

from app.auth.context import principal_of
from app.auth.scopes import Scope
from app.health import ready_checks
from app.inference.backends.base import Endpoint
from app.inference.errors import EXCEPTION_HANDLERS
from app.inference.router import BackendRouter
from app.inference.schemas import ModelCard, ModelList
from app.inference.service import InferenceService, build_backends
from app.inference.upstream import UpstreamPool
from app.settings import Settings

OPT = {"scope": Scope.INFERENCE, "epistula": True}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


async def _dispatch(request: Request, endpoint: Endpoint) -> Response[bytes] | Stream:
    service = _service(request)
    raw = await request.body()
    body = service.parse(endpoint, raw)
    service.authorize_model(request, body.model)
    if endpoint != "embeddings" and body.stream:
        result = await service.open_stream(request, endpoint, raw, body)
        if isinstance(result, tuple):
            return Response(result[1], status_code=result[0], media_type=MediaType.JSON)
        return Stream(result, media_type="text/event-stream", headers=SSE_HEADERS)
    status, content = await service.complete(request, endpoint, raw, body)
    return Response(content, status_code=status, media_type=MediaType.JSON)


@post("/chat/completions", opt=OPT, status_code=200, tags=["inference"], summary="Chat completion")
async def chat_completions(request: Request) -> Response[bytes] | Stream:
    """OpenAI chat completion, streamed as server-sent events when `stream` is true (ending with
    `data: [DONE]`; `stream_options.include_usage` adds the usage chunk). Routed by `model`."""
    return await _dispatch(request, "chat")


@post("/completions", opt=OPT, status_code=200, tags=["inference"], summary="Text completion")
async def completions(request: Request) -> Response[bytes] | Stream:
    """OpenAI (legacy) text completion, streamed when `stream` is true. Routed by `model`."""
    return await _dispatch(request, "completions")


@post("/embeddings", opt=OPT, status_code=200, tags=["inference"], summary="Embeddings")
async def embeddings(request: Request) -> Response[bytes] | Stream:
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
def get_model(request: Request, model_id: str) -> ModelCard:
    """One model by id (ids may contain slashes, as Hugging Face names do)."""
    service = _service(request)
    model = model_id.lstrip("/")
    service.authorize_model(request, model)
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
            build_backends(settings.inference, pool),
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
