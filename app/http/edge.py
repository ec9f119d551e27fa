"""The edge: the ASGI app granian serves, wrapped around Litestar.

Every HTTP request passes here first. The edge creates its request context (app/http/context.py), binds
its request id to the log lines, bounds it by the caller's `X-Pylon-Timeout` (app/http/timeout.py), tries
the hot routes (app/http/hot.py) and otherwise hands the request to Litestar, adding `X-Request-ID` to
whatever Litestar answers (404s and 405s included). When the answer has been sent (for a stream, its last
chunk) it counts and times the request under its route template and records the caller's usage. This is
ASGI's own extension point (an app wrapping an app); Litestar itself is used as it is.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, cast

from litestar import Litestar
from litestar.types import HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from app.auth.context import Principal
from app.http.context import CONTEXT_KEY, REQUEST_ID_HEADER, RequestContext
from app.http.hot import HotRequest, HotRoute, HotRoutes
from app.http.raw import RawResponse
from app.http.security import missing_security_headers
from app.http.timeout import requested_timeout, within
from app.logging import RequestIds
from app.metrics import UNMATCHED_PATH, count_request

Dispatch = Callable[[RequestContext, HTTPScope, Receive, Send], Awaitable[int]]


class Envelope(Protocol):
    """A transport around requests (Fiber's MLTS: app/fiber/envelope.py): it opens the requests it
    `wraps`, hands the opened request to `dispatch` (hot routes, then Litestar) and seals the answer."""

    def wraps(self, scope: HTTPScope) -> bool: ...

    async def open(
        self,
        state: Any,
        context: RequestContext,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
        dispatch: Dispatch,
    ) -> int: ...


_CONNECTION_CLOSE = (b"connection", b"close")


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _close_if_answered_early(receive: Receive, send: Send) -> tuple[Receive, Send]:
    """An answer that starts before the whole body was read (a 413, a refused credential) says
    `Connection: close`: the unread rest of the body would otherwise be parsed as the next request on
    the keep-alive connection, and that request would never be answered. The server closes it after
    the answer; the client opens a new one."""
    body_read = False

    async def watched_receive() -> ReceiveMessage:
        nonlocal body_read
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_read = True
        return message

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start" and not body_read:
            message["headers"] = [*message.get("headers", ()), _CONNECTION_CLOSE]
        await send(message)

    return watched_receive, closing_send


class PylonEdge:
    """Litestar behind the edge; `state` is the Litestar app's state (features keep their runtime there)."""

    def __init__(
        self,
        litestar: Litestar,
        hot_routes: Sequence[HotRoute] = (),
        envelopes: Sequence[Envelope] = (),
    ) -> None:
        self.litestar = litestar
        self.state = litestar.state
        self.hot_routes = HotRoutes(hot_routes)
        self.envelopes = tuple(envelopes)
        # With CORS on, a browser's request (it sends Origin) takes the routed path, where Litestar's CORS
        # middleware answers it; validators and scripts send no Origin and keep the hot routes.
        self.cors = litestar.cors_config is not None
        self.request_ids = RequestIds()
        self.app_name: str = litestar.state.settings.app_name
        self.max_timeout: float = litestar.state.settings.server.max_request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.litestar(scope, receive, send)
            return
        scope = cast(HTTPScope, scope)
        request_id = self.request_ids.of(scope)
        method = scope["method"]
        context = RequestContext(request_id, method, self.app_name)
        scope_state = scope.get("state")
        if scope_state is None:
            scope_state = scope["state"] = {}
        scope_state[CONTEXT_KEY] = context
        if _has_body(scope["headers"]):
            receive, send = _close_if_answered_early(receive, send)
        token = RequestIds.bind(request_id)
        started = time.perf_counter()
        status = 500
        try:
            timeout = requested_timeout(scope["headers"], self.max_timeout)
            if timeout is None:
                status = await self._answer(context, scope, receive, send)
            elif isinstance(timeout, RawResponse):
                status = await timeout.respond(receive, send, (context.request_id_header,))
            else:

                async def answer(bounded_send: Send) -> int:
                    return await self._answer(context, scope, receive, bounded_send)

                status = await within(timeout, answer, receive, send, [context.request_id_header])
        finally:
            latency = time.perf_counter() - started
            context.leave_route()
            count_request(method, context.template or UNMATCHED_PATH, status, self.app_name, latency)
            if context.principal is not None:
                self.state.keys_runtime.account(
                    context.principal,
                    context.usage,
                    method,
                    context.template or UNMATCHED_PATH,
                    status,
                    latency,
                )
            RequestIds.unbind(token)

    async def _answer(self, context: RequestContext, scope: HTTPScope, receive: Receive, send: Send) -> int:
        for envelope in self.envelopes:
            if envelope.wraps(scope):
                return await envelope.open(self.state, context, scope, receive, send, self._dispatch)
        return await self._dispatch(context, scope, receive, send)

    async def _dispatch(self, context: RequestContext, scope: HTTPScope, receive: Receive, send: Send) -> int:
        matched = self.hot_routes.match(scope["method"], scope["path"])
        if matched is not None and self.cors and any(name == b"origin" for name, _ in scope["headers"]):
            matched = None
        answered = None if matched is None else await self._hot(*matched, context, scope, receive, send)
        return answered if answered is not None else await self._routed(context, scope, receive, send)

    async def _hot(
        self,
        route: HotRoute,
        params: dict[str, Any],
        context: RequestContext,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
    ) -> int | None:
        if context.principal is not None and context.admitted_for == route.requirement:
            # Admitted by an envelope (an opened MLTS call) for this requirement.
            admitted: Any = context.principal
        else:
            admitted = self.state.authenticator.check(scope["headers"], route.requirement)
        if type(admitted) is not Principal:
            # Refusals, and checks that need I/O, are the routed path's to answer.
            return None
        context.principal = admitted
        context.admitted_for = route.requirement
        context.enter_route(route.template)
        request = HotRequest(scope, receive, _secured(send), self.state, context, params)
        status: int | None = await route.handler(request)
        return status

    async def _routed(self, context: RequestContext, scope: HTTPScope, receive: Receive, send: Send) -> int:
        status = 500
        header = context.request_id_header

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: responses may share a prebuilt header list (the metagraph's) between requests.
                headers = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID_HEADER]
                headers.append(header)
                headers += missing_security_headers(headers)
                message["headers"] = headers
            await send(message)

        await self.litestar(scope, receive, send_with_id)
        return status


def _secured(send: Send) -> Send:
    """`send` with the security headers added to a hot route's answer (app/http/security.py)."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            message["headers"] = headers + missing_security_headers(headers)
        await send(message)

    return secured
