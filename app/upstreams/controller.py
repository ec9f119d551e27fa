"""A miner's internal servers behind Pylon: one Litestar mount per `PYLON_UPSTREAMS` prefix, and `/status`.

Each prefix is an ASGI mount (`UpstreamMount`) declaring `opt={"scope": "upstream", "epistula": True}`, so
the one admission pipeline (app/http/admission.py) authenticates it like every route: an API key with the
`upstream` scope, the admin token, or an Epistula v2 signature from a registered hotkey (plus the
upstream's own permit and stake requirements). A signature covers the body's SHA-256, so a signed body is
read whole before it is checked: the mount's body limit (`PYLON_UPSTREAM_SIGNED_BODY_MAX`, 413 beyond)
applies to the bytes admission reads, and nothing reaches the upstream before the signature holds. Other
callers' bodies are never read here: they stream from `receive` to the upstream as they arrive, and the
answer streams back the same way (`relay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog
from litestar import Litestar, Request, Response, get
from litestar.handlers import ASGIRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.types import HTTPScope, Receive, Scope, Send
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

from app.auth.scopes import Scope as AuthScope
from app.health import ReadyCheck, ReadyResponse, ready_checks, run_checks
from app.http.context import context_of
from app.http.raw import ClientGone, json_response
from app.settings import Settings
from app.upstreams.service import ProxyRequest, ProxyResponse, Upstream, UpstreamFailure, UpstreamProxy

log = structlog.get_logger(__name__)

_FAILURE_STATUS = {"unreachable": 502, "timeout": 504}


class UpstreamMount(ASGIRouteHandler):
    """An upstream prefix as a Litestar mount. Its body limit is what admission may read of a signed body;
    Litestar's ASGI handlers have none of their own, so the request's `body()` asks this one."""

    __slots__ = ("signed_body_max",)

    def __init__(self, *, signed_body_max: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signed_body_max = signed_body_max

    def resolve_request_max_body_size(self) -> int:
        return self.signed_body_max


def error_answer(status: int, detail: str, **extra: Any) -> Any:
    """Pylon's error body, `{"status_code", "detail", "extra"}`, as a raw ASGI answer."""
    return json_response(
        status, msgspec.json.encode({"status_code": status, "detail": detail, "extra": extra})
    )


def proxy_request(scope: HTTPScope, raw_path: str) -> ProxyRequest:
    """The plain request the proxy forwards, from the ASGI scope and the caller admission verified."""
    context = context_of(scope)
    client = scope.get("client")
    return ProxyRequest(
        method=scope["method"],
        raw_path=raw_path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=scope["headers"],
        caller=context.principal,
        client_ip=client[0] if client else None,
        scheme=scope.get("scheme", "http"),
        request_id=context.request_id,
    )


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return False


async def _received(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    """The body's pieces as ASGI delivers them; `done` is set once it has all arrived."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            piece: bytes = message.get("body", b"")  # type: ignore[assignment]
            if piece:
                yield piece
            if not message.get("more_body", False):
                return
    finally:
        done.set()


async def relay(response: ProxyResponse, receive: Receive, send: Send, body_done: asyncio.Event) -> int:
    """Send the upstream's answer on as it comes; a caller who leaves cancels it (the upstream's
    connection is dropped, so it stops). Returns the status sent."""
    task = asyncio.current_task()
    assert task is not None

    async def cancel_on_disconnect() -> None:
        # Only once the request body is in: until then `receive` is the body's.
        await body_done.wait()
        while True:
            if (await receive())["type"] == "http.disconnect":
                task.cancel()
                return

    watcher = asyncio.create_task(cancel_on_disconnect())
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
        async for piece in response:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        task.uncancel()
    except (UpstreamFailure, OSError, ClientGone) as exc:
        # The answer has begun, so no error status can be sent: the caller sees it end unfinished.
        log.warning("upstream_answer_broken", upstream=response.upstream.name, error=str(exc))
    finally:
        watcher.cancel()
        await response.aclose()
    return response.status


async def serve_upstream(upstream: Upstream, scope: HTTPScope, receive: Receive, send: Send) -> None:
    """Forward one admitted request to `upstream` and relay its answer (502/504 JSON when none came)."""
    context = context_of(scope)
    # A mount's template is Litestar's root; the prefix is the route (metrics and usage label).
    context.enter_route(upstream.prefix)
    proxy: UpstreamProxy = scope["litestar_app"].state.upstreams
    raw = scope.get("raw_path")
    raw_path = raw.decode("latin-1").partition("?")[0] if raw else upstream.prefix + scope["path"].rstrip("/")
    routed = proxy.route(raw_path)
    if routed is None or routed.name != upstream.name:
        # Litestar matches a mount as a plain string prefix: `/trainer` reaches `/train`'s mount.
        await error_answer(404, "Not Found")(scope, receive, send)
        return
    body_done = asyncio.Event()
    signed = value_or_default(ScopeState.from_scope(scope).body, None)
    body: Any
    if signed is not None:
        # Read whole by admission to check its signature: forwarded as it was signed.
        body = signed
        body_done.set()
    elif _has_body(scope["headers"]):
        body = _received(receive, body_done)
    else:
        body = None
        body_done.set()
    try:
        response = await proxy.forward(upstream, proxy_request(scope, raw_path), body)
    except UpstreamFailure as failure:
        status = _FAILURE_STATUS[failure.kind]
        await error_answer(status, failure.detail, upstream=upstream.name, reason=failure.kind)(
            scope, receive, send
        )
        return
    except ClientGone:
        return
    await relay(response, receive, send, body_done)


def upstream_mount(upstream: Upstream, signed_body_max: int) -> BaseRouteHandler:
    """The mount for one upstream prefix, with its auth requirement."""

    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        await serve_upstream(upstream, scope, receive, send)  # type: ignore[arg-type]

    proxy.__doc__ = f"Proxied to the `{upstream.name}` upstream (any method, streamed both ways)."
    settings = upstream.settings
    return UpstreamMount(
        path=upstream.prefix,
        is_mount=True,
        copy_scope=False,
        signed_body_max=signed_body_max,
        name=f"upstream:{upstream.name}",
        opt={
            "scope": AuthScope.UPSTREAM,
            "epistula": True,
            "epistula_validator_permit": settings.require_validator_permit,
            "epistula_min_stake": settings.min_stake,
        },
    )(proxy)


@get("/status", tags=["ops"], opt={"open": "readiness, as /ready, with each upstream"})
async def status(request: Request) -> Response[ReadyResponse]:
    """Every component's readiness: database, chain, inference backends and each upstream (probed at most
    every few seconds). 503 when one is down: a required upstream that does not answer, the database, or
    no chain head yet; 200 when all are ok or degraded."""
    state = request.app.state
    checks: dict[str, ReadyCheck] = dict(ready_checks(state))
    proxy: UpstreamProxy | None = state.get("upstreams")
    if proxy is not None:
        for upstream in proxy.upstreams:
            checks[f"upstream:{upstream.name}"] = _probe(proxy, upstream)
    overall, results = await run_checks(checks)
    return Response(
        ReadyResponse(status=overall, checks=results), status_code=503 if overall == "down" else 200
    )


def _probe(proxy: UpstreamProxy, upstream: Upstream) -> ReadyCheck:
    return lambda: proxy.probe(upstream)


def upstream_routes(settings: Settings) -> list[BaseRouteHandler]:
    """`/status` and one mount per configured upstream."""
    section = settings.upstreams
    return [
        status,
        *(upstream_mount(Upstream.of(u), section.upstream_signed_body_max) for u in section.upstreams),
    ]


def upstreams_lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    """The worker's upstream proxy and its connection pool (`app.state.upstreams`)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        proxy = UpstreamProxy(settings.upstreams)
        await proxy.start()
        app.state.upstreams = proxy
        try:
            yield
        finally:
            await proxy.close()

    return lifespan
