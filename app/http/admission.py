"""Admission of routed requests: the route's requirement (its `opt`), checked by the one Authenticator.

A Litestar middleware rather than a guard: Litestar copies the whole route handler object before every
guard call, which cost more than the check itself on a cached read. Refusals are rendered with the route's
own exception handlers (OpenAI's error format on /v1, `{"status_code", "detail", "extra"}` elsewhere) and
still pass through the edge, which counts them and, for a known key, records them in its usage.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter

from app.auth.refusal import Refusal
from app.http.authenticate import Pending, Requirement
from app.http.context import context_of

# The OpenAPI schema and Swagger UI are served by Litestar's own handlers, which carry no opt.
OPEN_PATH_PREFIXES = ("/schema",)

AUTH_FAILURES = Counter("pylon_auth_failures_total", "Requests refused by the auth guard.", ("reason",))
RATE_LIMITED = Counter("pylon_rate_limited_total", "Requests refused with 429 by a key's limit.", ("limit",))
# Refusals of the route, not of the caller's credentials.
_NOT_AUTH_FAILURES = frozenset({"no_scope", "metrics_disabled"})
# Where a handler's parsed requirement is kept, in its own opt (which it is read from).
_REQUIREMENT = "pylon_requirement"
_NOT_READ = object()


def requirement_of(handler: BaseRouteHandler) -> Requirement | None:
    """The handler's requirement (None: open), read from its opt once."""
    requirement = handler.opt.get(_REQUIREMENT, _NOT_READ)
    if requirement is _NOT_READ:
        requirement = handler.opt[_REQUIREMENT] = Requirement.of(handler.opt)
    return requirement


def count_refusal(refusal: Refusal) -> None:
    if refusal.reason in ("rpm", "tpm"):
        RATE_LIMITED.labels(refusal.reason).inc()
    elif refusal.reason not in _NOT_AUTH_FAILURES:
        AUTH_FAILURES.labels(refusal.reason).inc()


def as_http_exception(refusal: Refusal) -> HTTPException:
    return HTTPException(
        refusal.detail, status_code=refusal.status_code, headers=refusal.headers, extra=refusal.extra
    )


def _render(request: Request[Any, Any, Any], handler: BaseRouteHandler, exc: HTTPException) -> Response[Any]:
    """The response the route's exception handlers give `exc` (status code first, then the class's MRO),
    as Litestar does for an exception raised in a handler."""
    handlers = handler.resolve_exception_handlers()
    for key in (exc.status_code, *type(exc).__mro__):
        if key in handlers:
            response: Response[Any] = handlers[key](request, exc)  # type: ignore[index]
            return response
    raise exc


def _on_identity_path(refusal: Refusal, handler: BaseRouteHandler, scope: Scope) -> Refusal:
    """On a path naming an identity (`opt["identity_param"]`), a credential that is not recognised is that
    identity's wrong token: 403, as bittensor-pylon answers and its client expects."""
    param = handler.opt.get("identity_param")
    if refusal.status_code != 401 or refusal.reason == "missing" or param not in scope["path_params"]:
        return refusal
    return msgspec.structs.replace(
        refusal, status_code=403, headers=None, detail="invalid token for this identity"
    )


def admission_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler: BaseRouteHandler = scope["route_handler"]
        requirement = requirement_of(handler)
        if scope["type"] != "http":
            if requirement is not None:
                raise PermissionDeniedException("only HTTP requests are served here")
            await app(scope, receive, send)
            return
        context = context_of(scope)
        context.enter_route(scope["path_template"])
        if (
            requirement is None
            or scope["path"].startswith(OPEN_PATH_PREFIXES)
            or (context.principal is not None and context.admitted_for == requirement)
        ):
            await app(scope, receive, send)
            return
        authenticator = scope["litestar_app"].state.authenticator
        admitted = authenticator.check(scope["headers"], requirement)
        request: Request[Any, Any, Any] | None = None
        if isinstance(admitted, Pending):
            request = Request(scope, receive, send)
            admitted = await authenticator.complete(admitted, scope["headers"], request.body)
        if isinstance(admitted, Refusal):
            admitted = _on_identity_path(admitted, handler, scope)
            count_refusal(admitted)
            context.principal = admitted.principal
            request = request or Request(scope, receive, send)
            response = _render(request, handler, as_http_exception(admitted))
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        context.principal = admitted
        context.admitted_for = requirement
        await app(scope, receive, send)

    return middleware
