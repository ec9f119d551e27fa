"""`POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings` ahead of Litestar's router (see
app/fastpath.py): read the body, validate, forward, relay. The same `InferenceService` calls as the routes
in controller.py, so validation, routing, failover, metrics and usage are shared; only the ASGI plumbing
is done by hand.

The decision to answer here is taken on the headers alone (a caller `authorize_cached` knows), before the
body is read: from then on every answer, errors included, is sent here in OpenAI's format, as the
router's exception handlers would send it. Epistula callers and uncached keys take the full route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import structlog
from litestar.types import HTTPScope, Receive, Send

from app.auth.guards import authorize_cached
from app.auth.scopes import Scope as AuthScope
from app.fastpath import answer_fast
from app.inference.backends.base import Endpoint
from app.inference.errors import InferenceError, error_body
from app.inference.service import InferenceService

log = structlog.get_logger(__name__)

ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_REQUIRED = str(AuthScope.INFERENCE)
_JSON = b"application/json"
# What Litestar's `Stream` with controller.py's SSE_HEADERS sends.
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def inference(scope: HTTPScope, receive: Receive, send: Send) -> bool:
    if scope["method"] != "POST":
        return False
    path = scope["path"]
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        return False
    state = scope["app"].state
    principal = authorize_cached(scope, state, _REQUIRED)
    if principal is None:
        return False
    service: InferenceService = state.inference

    async def respond(request_id: tuple[bytes, bytes]) -> int:
        return await _serve(service, scope, receive, send, endpoint, request_id)

    # The route's template is its path: these routes have no parameters.
    await answer_fast(scope, path, principal, respond)
    return True


async def _serve(
    service: InferenceService,
    scope: HTTPScope,
    receive: Receive,
    send: Send,
    endpoint: Endpoint,
    request_id: tuple[bytes, bytes],
) -> int:
    try:
        raw = await _read_body(scope, receive, service.settings.inference_max_body_size)
        body = service.parse(endpoint, raw)
        service.authorize_model(scope, body.model)
        if endpoint != "embeddings" and body.stream:
            result = await service.open_stream(scope, endpoint, raw, body)
            if isinstance(result, tuple):
                return await _send_json(send, *result, [request_id])
            await _stream(receive, send, result, request_id)
            return 200
        status, content = await service.complete(scope, endpoint, raw, body)
        return await _send_json(send, status, content, [request_id])
    except InferenceError as exc:
        headers = [(name.lower().encode(), value.encode()) for name, value in exc.headers.items()]
        headers.append(request_id)
        return await _send_json(
            send, exc.status_code, error_body(exc.status_code, exc.message, exc.code, exc.param), headers
        )
    except ClientGone:
        return 499
    except Exception:
        # As the router's `internal_error_handler` does: logged with its traceback, a 500 in OpenAI's format.
        log.exception("inference_unhandled_error", path=scope["path"])
        body = error_body(500, "internal server error", "internal_error")
        return await _send_json(send, 500, body, [request_id])


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


async def _read_body(scope: HTTPScope, receive: Receive, limit: int) -> bytes:
    """The whole body, or a 413 as soon as it (announced or received) passes `limit`, as Litestar does."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise _too_large()
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large()
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> InferenceError:
    return InferenceError(413, "Request Entity Too Large", code="request_too_large")


async def _send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> int:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


async def _stream(
    receive: Receive, send: Send, events: AsyncIterator[bytes], request_id: tuple[bytes, bytes]
) -> None:
    """Relay server-sent events; a client that disconnects cancels the relay, which closes the upstream
    request (the service's relay closes it in its `finally`)."""
    relay = asyncio.current_task()
    assert relay is not None
    done = False

    async def cancel_on_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not done:
                    relay.cancel()
                return

    watcher = asyncio.create_task(cancel_on_disconnect())
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, request_id]})
        async for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        # Cancelled by the watcher: the client left. The relay below is closed; nothing more to send.
        relay.uncancel()
    except Exception as exc:
        # The answer has started, so no error can be sent any more (a send to a client that has gone,
        # or a failure of the relay itself): the client sees the stream end.
        log.warning("inference_stream_aborted", error=f"{type(exc).__name__}: {exc}")
    finally:
        done = True
        watcher.cancel()
        aclose: Any = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
