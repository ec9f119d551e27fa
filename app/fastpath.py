"""Hot routes answered before Litestar's own entry point, for the plain successful case only.

Validators poll the latest metagraph and clients call inference thousands of times a second; for those
requests Litestar's routing, middleware stack and handler pipeline cost more than the work itself. A fast
handler is an ASGI callable that returns True once it has answered, or False, before any side effect,
to hand the request to Litestar. It answers only what it can answer exactly as the full route would: a
caller known without I/O (`authorize_cached`) and data already in memory. Everything else (no or bad
credentials, a cold cache, bad input) goes through the full route, so every refusal and error keeps one
rendering.

`answer_fast` gives a fast answer what the middlewares around Litestar's router give a routed one: the
request id (header and log lines), the HTTP metrics under the route's template, the in-progress gauge,
the caller in the scope and the usage record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from litestar import Litestar
from litestar.types import HTTPScope, Receive, Scope, Send

from app.auth.context import Principal, set_principal, usage_of
from app.keys.usage import account
from app.logging import RequestIds
from app.metrics import BUFFER, count_request, in_progress_gauge

FastHandler = Callable[[HTTPScope, Receive, Send], Awaitable[bool]]
# Sends the answer, including this `X-Request-ID` header, and returns its status code.
Respond = Callable[[tuple[bytes, bytes]], Awaitable[int]]


class PylonApp(Litestar):
    """Litestar, with `fast_handlers` tried on each HTTP request before Litestar's own entry point (whose
    per-message send wrapper alone costs more than a fast answer's bookkeeping)."""

    fast_handlers: Sequence[FastHandler] = ()
    request_ids: RequestIds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.fast_handlers:
            # What Litestar.__call__ puts in the scope, which the fast handlers read.
            scope["app"] = scope["litestar_app"] = self
            scope.setdefault("state", {})
            http_scope = cast(HTTPScope, scope)
            for handler in self.fast_handlers:
                if await handler(http_scope, receive, send):
                    return
        await super().__call__(scope, receive, send)


def app_of(scope: Scope) -> PylonApp:
    return cast(PylonApp, scope["app"])


async def answer_fast(scope: HTTPScope, template: str, principal: Principal, respond: Respond) -> None:
    """Run `respond` as the route `template` would answer, for `principal`."""
    app = app_of(scope)
    state = app.state
    app_name: str = state.settings.app_name
    request_id = app.request_ids.of(scope)
    scope["state"]["request_id"] = request_id
    scope["path_template"] = template
    set_principal(scope, principal)
    method = scope["method"]
    gauge = in_progress_gauge(method, template, app_name)
    token = RequestIds.bind(request_id)
    started = time.perf_counter()
    status = 500
    BUFFER.add_to_gauge(gauge, 1)
    try:
        status = await respond((RequestIds.HEADER, request_id.encode()))
    finally:
        latency = time.perf_counter() - started
        BUFFER.add_to_gauge(gauge, -1)
        count_request(method, template, status, app_name, latency)
        account(state.keys_runtime, principal, usage_of(scope), method, template, status, latency)
        RequestIds.unbind(token)
