"""Raw ASGI answers, shared by the hot and the routed path so both send the same bytes and headers.

A routed handler returns one of these (Litestar calls an ASGI app a handler returns); a hot handler calls
`respond(receive, send, extra_headers)` itself, adding the request id header the edge adds for routed
answers. Either way the answer is built by the feature's one renderer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

import structlog
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send

log = structlog.get_logger(__name__)

Header = tuple[bytes, bytes]
JSON = b"application/json"


class RawAnswer:
    """An answer that sends itself; `respond` returns the status it sent."""

    async def respond(self, receive: Receive, send: Send, extra_headers: Sequence[Header] = ()) -> int:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.respond(receive, send)


class RawResponse(RawAnswer):
    """Prebuilt status, headers and body (the metagraph's are built once per block and reused)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    async def respond(self, receive: Receive, send: Send, extra_headers: Sequence[Header] = ()) -> int:
        # A fresh list when adding: the prebuilt one is shared between requests.
        headers = [*self.headers, *extra_headers] if extra_headers else self.headers
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": headers,
        }
        body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": self.body, "more_body": False}
        await send(start)
        await send(body)
        return self.status


def json_response(status: int, body: bytes, headers: Iterable[Header] = ()) -> RawResponse:
    return RawResponse(
        status, [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *headers], body
    )


class EventStream(RawAnswer):
    """Relays server-sent events. A client that disconnects cancels the relay, and `events` is closed
    (closing an upstream response cancels the backend's generation); `on_close` runs last either way."""

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        headers: list[Header],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.headers = headers
        self.on_close = on_close

    async def respond(self, receive: Receive, send: Send, extra_headers: Sequence[Header] = ()) -> int:
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
            headers = [*self.headers, *extra_headers]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watcher.done():
                raise
            # Cancelled by the watcher: the client left. The relay is closed below; nothing more to send.
            relay.uncancel()
        except Exception as exc:
            # The answer has started, so no error can be sent any more (a send to a client that has gone,
            # or a failure of the relay itself): the client sees the stream end.
            log.warning("event_stream_aborted", error=f"{type(exc).__name__}: {exc}")
        finally:
            done = True
            watcher.cancel()
            await self.events.aclose()
            if self.on_close is not None:
                self.on_close()
        return 200


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class BodyTooLarge(Exception):
    """The body (announced or received) passed the route's limit."""


async def read_body(scope: HTTPScope, receive: Receive, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes `limit` (as Litestar refuses it)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise BodyTooLarge
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
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
