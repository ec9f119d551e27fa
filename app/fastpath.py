"""Hot routes answered ahead of Litestar's router, for the plain successful case only.

Validators poll the latest metagraph and clients call inference thousands of times a second; for those
requests Litestar's routing, middleware stack and handler pipeline cost more than the work itself. A fast
handler is an ASGI callable that returns True once it has answered, or False, before any side effect,
to hand the request to Litestar. It answers only what it can answer exactly as the full route would: a
caller known without I/O (`authorize_cached`) and data already in memory. Everything else (no or bad
credentials, a cold cache, bad input) goes through the full route, so every refusal and error keeps one
rendering.

The request id and the HTTP metrics wrap both paths (see `create_app()`); `answer_fast` adds what
Litestar's own middlewares give a matched route: the route template, the caller, the in-progress gauge
and the usage record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from app.auth.context import Principal, set_principal, usage_of
from app.keys.usage import account
from app.metrics import BUFFER, in_progress_gauge

FastHandler = Callable[[HTTPScope, Receive, Send], Awaitable[bool]]


def fast_routes(handlers: Sequence[FastHandler]) -> Callable[[ASGIApp], ASGIApp]:
    """Wrap Litestar's router: each handler in turn may answer an HTTP request before it."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                http_scope = cast(HTTPScope, scope)
                for handler in handlers:
                    if await handler(http_scope, receive, send):
                        return
            await app(scope, receive, send)

        return dispatch

    return wrap


async def answer_fast(
    scope: HTTPScope, template: str, principal: Principal, respond: Callable[[], Awaitable[int]]
) -> None:
    """Run `respond` (which sends the answer and returns its status) as the route `template` would, for
    `principal`."""
    scope["path_template"] = template
    set_principal(scope, principal)
    state = scope["app"].state
    method = scope["method"]
    gauge = in_progress_gauge(method, template, state.settings.app_name)
    started = time.perf_counter()
    status = 500
    BUFFER.add_to_gauge(gauge, 1)
    try:
        status = await respond()
    finally:
        BUFFER.add_to_gauge(gauge, -1)
        account(
            state.keys_runtime,
            principal,
            usage_of(scope),
            method,
            template,
            status,
            time.perf_counter() - started,
        )
