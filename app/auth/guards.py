"""The one check every route passes through (`auth_middleware` runs `authorize`): it reads the route's scope.

A route declares `opt={"scope": Scope.X}` or `opt={"open": "why"}`; a route that declares neither is
refused, so a new route cannot ship unguarded. Credentials, in order:
- `Authorization: Bearer <credential>` (or `X-API-Key: <credential>`): `PYLON_ADMIN_TOKEN` (every scope),
  `PYLON_METRICS_TOKEN` on routes with `opt["metrics_token"]`, or an API key `pylon_<id>_<secret>`;
- Epistula v2 headers, only on routes with `opt["epistula"]` (the signer gets the `inference` scope).
No or bad credentials: 401. A valid credential without the route's scope: 403 naming it. A key whose
requests- or tokens-per-minute budget is spent: 429 with Retry-After.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as ASGIScope
from prometheus_client import Counter

from app.auth.context import Principal, set_principal
from app.auth.epistula import has_epistula_headers
from app.auth.keys import CachedKey, parse_key
from app.auth.scopes import Scope

# The OpenAPI schema and Swagger UI are served by Litestar's own handlers, which carry no opt.
OPEN_PATH_PREFIXES = ("/schema",)
ALL_SCOPES = frozenset(str(scope) for scope in Scope)
EPISTULA_SCOPES = frozenset({str(Scope.INFERENCE)})
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="pylon"'}

AUTH_FAILURES = Counter("pylon_auth_failures_total", "Requests refused by the auth guard.", ("reason",))
RATE_LIMITED = Counter("pylon_rate_limited_total", "Requests refused with 429 by a key's limit.", ("limit",))


def _unauthorized(reason: str, detail: str) -> NotAuthorizedException:
    AUTH_FAILURES.labels(reason).inc()
    return NotAuthorizedException(detail, headers=WWW_AUTHENTICATE)


def _raw_header(connection: ASGIConnection, name: bytes) -> str | None:
    # The scope's raw headers: building Litestar's Headers object costs more than the check itself.
    for key, value in connection.scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _credential(connection: ASGIConnection) -> str | None:
    authorization = _raw_header(connection, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            # An empty bearer ("Bearer ", which clients send when their token variable is unset) is no
            # credential at all: the route answers as it does to a caller who sent nothing.
            return token.strip() or None
        raise _unauthorized("malformed", "the Authorization header must be 'Bearer <key>'")
    return _raw_header(connection, b"x-api-key") or None


def _matches(token: str, expected: str) -> bool:
    return bool(expected) and secrets.compare_digest(token.encode(), expected.encode())


async def _key(runtime: Any, token: str) -> CachedKey:
    parsed = parse_key(token)
    if parsed is None:
        raise _unauthorized("malformed", "invalid credential: expected an API key 'pylon_<id>_<secret>'")
    key_id, secret = parsed
    cached = await runtime.cache.get(key_id)
    if cached is None or not cached.matches(secret):
        raise _unauthorized("unknown_key", "invalid API key")
    if cached.revoked:
        raise _unauthorized("revoked", f"API key {key_id} has been revoked")
    if cached.expires_at is not None and cached.expires_at <= time.time():
        raise _unauthorized("expired", f"API key {key_id} has expired")
    return cached


def _refuse_disabled_metrics(connection: ASGIConnection, admin_token: str) -> None:
    """bittensor-pylon's contract: /metrics is closed (403) while PYLON_METRICS_TOKEN is unset; only an API
    key (with `metrics:read`) or the admin token still opens it."""
    raw = connection.headers.get("authorization", "")
    token = raw.partition(" ")[2].strip() if raw else connection.headers.get("x-api-key", "")
    if parse_key(token) is None and not _matches(token, admin_token):
        raise PermissionDeniedException(
            "metrics are disabled: set PYLON_METRICS_TOKEN, or call with an API key that has 'metrics:read'"
        )


async def _authenticate(connection: ASGIConnection, handler: BaseRouteHandler) -> Principal | CachedKey:
    state = connection.app.state
    settings = state.settings
    if handler.opt.get("metrics_token") and not settings.auth.metrics_token:
        _refuse_disabled_metrics(connection, settings.auth.admin_token)
    token = _credential(connection)
    if token is not None:
        if _matches(token, settings.auth.admin_token):
            return Principal(kind="admin_token", id="admin", scopes=ALL_SCOPES)
        if handler.opt.get("metrics_token") and _matches(token, settings.auth.metrics_token):
            return Principal(kind="metrics_token", id="metrics", scopes=frozenset({str(Scope.METRICS_READ)}))
        return await _key(state.keys_runtime, token)
    if handler.opt.get("epistula") and has_epistula_headers(connection.headers):
        if not isinstance(connection, Request):
            raise _unauthorized("malformed", "Epistula signatures are only accepted on HTTP requests")
        body = await connection.body()
        try:
            hotkey = await state.keys_runtime.epistula.verify(
                connection.headers, body, state.hotkey_directory
            )
        except Exception:
            AUTH_FAILURES.labels("epistula").inc()
            raise
        return Principal(kind="epistula", id=hotkey, scopes=EPISTULA_SCOPES)
    accepted = "an API key (Authorization: Bearer pylon_...)"
    if handler.opt.get("epistula"):
        accepted += " or an Epistula v2 signature"
    raise _unauthorized("missing", f"authentication required: send {accepted}")


async def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    if "open" in handler.opt or connection.scope["path"].startswith(OPEN_PATH_PREFIXES):
        return
    required = handler.opt.get("scope")
    if required is None:
        raise PermissionDeniedException("this route declares no scope and is refused")
    caller = await _authenticate(connection, handler)
    principal = caller.principal if isinstance(caller, CachedKey) else caller
    set_principal(connection, principal)
    if str(required) not in principal.scopes:
        AUTH_FAILURES.labels("scope").inc()
        raise PermissionDeniedException(
            f"missing scope '{required}'", extra={"missing_scope": str(required), "principal": principal.id}
        )
    if isinstance(caller, CachedKey) and (caller.rpm is not None or caller.tpm is not None):
        limited = connection.app.state.keys_runtime.limiter.acquire(caller.id, caller.rpm, caller.tpm)
        if limited is not None:
            which, retry_after = limited
            RATE_LIMITED.labels(which).inc()
            budget = caller.rpm if which == "rpm" else caller.tpm
            raise TooManyRequestsException(
                f"rate limit exceeded: {budget} {'requests' if which == 'rpm' else 'tokens'} per minute",
                headers={"Retry-After": str(retry_after)},
                extra={"limit": which, "retry_after": retry_after},
            )


def authorize_cached(scope: ASGIScope, state: Any, required: str) -> Principal | None:
    """`authorize` for the common case, with no I/O and no Litestar objects: the fast routes' check.

    Returns the caller when the request carries a bearer admin token, or an API key that is in this
    worker's cache, live, has `required` and is within its request budget (the request is then counted).
    Returns None for anything else (no or malformed credential, unknown or uncached key, missing scope,
    spent budget, Epistula); the caller then hands the request to the full pipeline, which gives the same
    answer `authorize` always gives, refusals included. Nothing is counted when it returns None.
    """
    token: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            token = rest.strip()
            break
        if name == b"x-api-key" and token is None:
            token = value.decode("latin-1")
    if not token:
        return None
    if _matches(token, state.settings.auth.admin_token):
        return Principal(kind="admin_token", id="admin", scopes=ALL_SCOPES)
    parsed = parse_key(token)
    if parsed is None:
        return None
    runtime = state.keys_runtime
    cached = runtime.cache.peek(parsed[0])
    if (
        cached is None
        or cached.revoked
        or (cached.expires_at is not None and cached.expires_at <= time.time())
        or required not in cached.principal.scopes
        or not cached.matches(parsed[1])
    ):
        return None
    if (cached.rpm is not None or cached.tpm is not None) and runtime.limiter.acquire(
        cached.id, cached.rpm, cached.tpm
    ) is not None:
        return None
    return cached.principal


def _refusal(request: Request, handler: BaseRouteHandler, exc: HTTPException) -> Response[Any]:
    """The response the route's exception handlers give `exc` (status code first, then the class's MRO),
    as Litestar does for an exception raised in a handler."""
    handlers = handler.resolve_exception_handlers()
    for key in (exc.status_code, *type(exc).__mro__):
        if key in handlers:
            response: Response[Any] = handlers[key](request, exc)  # type: ignore[index]
            return response
    raise exc


def auth_middleware(app: ASGIApp) -> ASGIApp:
    """Run `authorize` for the matched route before its handler.

    A middleware rather than a Litestar guard: Litestar copies the whole route handler object before every
    guard call, which cost more than the rest of the check on a cached metagraph read. Listed innermost
    in `create_app()`, so refusals pass through the usage and in-progress middlewares as a guard's did;
    they are rendered with the route's exception handlers (OpenAI's error format on /v1).
    """

    async def middleware(scope: ASGIScope, receive: Receive, send: Send) -> None:
        handler: BaseRouteHandler = scope["route_handler"]
        if scope["type"] != "http":
            await authorize(ASGIConnection(scope, receive, send), handler)
            await app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        try:
            await authorize(request, handler)
        except HTTPException as exc:
            response = _refusal(request, handler, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        await app(scope, receive, send)

    return middleware
