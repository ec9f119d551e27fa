"""The miner's reverse proxy: path prefixes mapped to internal servers (`PYLON_UPSTREAMS`).

`UpstreamProxy.forward(request, body)` sends one request to the upstream its path names and returns the
answer's head with its body still to read; bodies go through in pieces both ways (aiohttp's reader pauses
the socket beyond 64 KiB unread, so a slow caller slows the upstream instead of filling memory). It takes
and returns plain values, so the ASGI mount (controller.py) and other front ends (the Fiber protocol's
decrypted requests) share it. Failures are `UpstreamFailure` values: "unreachable" (nothing answered: 502)
or "timeout" (no answer in time: 504).

aiohttp pitfalls, and what is done about each: it adds `User-Agent`, `Accept`, `Accept-Encoding` and a
payload `Content-Type` when absent (skipped: the upstream sees the caller's headers only), decompresses
answers (off: bytes pass as sent, `Content-Encoding` with them), and picks chunked encoding for a body of
unknown length unless `Content-Length` is given (the caller's is forwarded, so a sized upload stays sized).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Literal

import aiohttp
import msgspec
import structlog
from yarl import URL

from app.auth.context import Principal
from app.health import CheckResult, CheckStatus
from app.settings import UpstreamSettings, UpstreamsSettings, upstream_name
from app.upstreams import metrics
from app.upstreams.headers import request_headers, response_headers

log = structlog.get_logger(__name__)

# Idle keep-alive connections are closed after this, below common servers' 5 s keep-alive.
KEEPALIVE_TIMEOUT = 4.0
SKIPPED_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class Upstream(msgspec.Struct, frozen=True, kw_only=True):
    """One configured upstream, resolved: its name, prefix, origin and base path."""

    name: str
    prefix: str
    origin: str
    base_path: str
    settings: UpstreamSettings

    @classmethod
    def of(cls, settings: UpstreamSettings) -> Upstream:
        url = URL(settings.url, encoded=True)
        return cls(
            name=upstream_name(settings),
            prefix=settings.prefix,
            origin=str(url.origin()),
            base_path=url.raw_path.rstrip("/"),
            settings=settings,
        )

    def target(self, raw_path: str, query: str) -> URL:
        """The upstream URL for a request path under this prefix (the prefix replaced by the base path)."""
        rest = raw_path[len(self.prefix) :]
        path = (self.base_path + rest) or "/"
        return URL(self.origin + path + (f"?{query}" if query else ""), encoded=True)


class ProxyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request to forward, as the front end received it (raw path: percent-encoding kept)."""

    method: str
    raw_path: str
    query: str = ""
    # As received, lower- or mixed-case names; hop-by-hop headers and credentials are dropped here.
    headers: Iterable[tuple[bytes, bytes]] = ()
    caller: Principal | None = None
    client_ip: str | None = None
    scheme: str = "http"
    request_id: str = ""


class UpstreamFailure(Exception):
    """No answer from the upstream: `unreachable` (connect refused, reset, bad HTTP) or `timeout`."""

    def __init__(self, upstream: str, kind: Literal["unreachable", "timeout"], detail: str) -> None:
        super().__init__(detail)
        self.upstream = upstream
        self.kind = kind
        self.detail = detail


class ProxyResponse:
    """The upstream's answer: status and headers now, the body as it comes (`async for piece in it`).

    Close it (`aclose`) when done; one not read to its end drops its connection, so the upstream stops.
    A failure while the body is read raises `UpstreamFailure` from the iteration.
    """

    def __init__(self, upstream: Upstream, response: aiohttp.ClientResponse, started: float) -> None:
        self.upstream = upstream
        self.status = response.status
        self.headers = response_headers(response.raw_headers)
        self._response = response
        self._started = started

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise _failure(self.upstream, exc) from exc
        except aiohttp.ClientError as exc:
            raise _failure(self.upstream, exc) from exc

    async def aclose(self) -> None:
        complete = self._response.content.at_eof()
        if complete:
            self._response.release()
        else:
            self._response.close()
        metrics.observe_done(self.upstream.name, time.perf_counter() - self._started, complete)


def _failure(upstream: Upstream, exc: BaseException) -> UpstreamFailure:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        timeout = upstream.settings.timeout
        connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
        what = (
            f"could not connect within {upstream.settings.connect_timeout:g}s"
            if connecting
            else f"gave no answer within {timeout:g}s"
        )
        return UpstreamFailure(upstream.name, "timeout", f"upstream {upstream.name!r} {what}")
    reason = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"connection refused or unreachable ({exc.os_error.__class__.__name__})"
    return UpstreamFailure(
        upstream.name, "unreachable", f"upstream {upstream.name!r} is unreachable: {reason}"
    )


class UpstreamProxy:
    """The worker's upstreams and its one pool of keep-alive connections to them."""

    def __init__(self, settings: UpstreamsSettings) -> None:
        self.settings = settings
        self.upstreams = [Upstream.of(upstream) for upstream in settings.upstreams]
        self._session: aiohttp.ClientSession | None = None
        self._probes: dict[str, tuple[float, CheckResult]] = {}
        self._probe_locks = {upstream.name: asyncio.Lock() for upstream in self.upstreams}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, keepalive_timeout=KEEPALIVE_TIMEOUT, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=SKIPPED_AUTO_HEADERS,
            # Relative URLs are never used; cookies belong to the caller, not to the pool.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def route(self, raw_path: str) -> Upstream | None:
        """The upstream whose prefix `raw_path` is, or is under (`/train`, `/train/...`), else None."""
        for upstream in self.upstreams:
            prefix = upstream.prefix
            if raw_path == prefix or (raw_path.startswith(prefix) and raw_path[len(prefix)] == "/"):
                return upstream
        return None

    async def proxy(
        self, request: ProxyRequest, body: bytes | AsyncIterable[bytes] | None
    ) -> ProxyResponse | None:
        """Proxy `request` to the upstream its path is under; None when no prefix matches (a 404).

        The one call for front ends other than the HTTP mounts (the Fiber protocol's decrypted requests):
        the caller has authenticated `request.caller` already. Raises `UpstreamFailure` as `forward` does.
        """
        upstream = self.route(request.raw_path)
        if upstream is None:
            return None
        return await self.forward(upstream, request, body)

    async def forward(
        self, upstream: Upstream, request: ProxyRequest, body: bytes | AsyncIterable[bytes] | None
    ) -> ProxyResponse:
        """Send `request` to `upstream` and return its answer once the head has arrived.

        `body`: the whole body, its pieces as they arrive (sent with the caller's `Content-Length`, or
        chunked without one), or None for none. Raises `UpstreamFailure` when no answer began.
        """
        assert self._session is not None, "UpstreamProxy.start() was not called"
        settings = upstream.settings
        headers = request_headers(
            request.headers,
            request.caller,
            client_ip=request.client_ip,
            scheme=request.scheme,
            request_id=request.request_id,
        )
        if body is not None and not isinstance(body, bytes | bytearray):
            body = _pieces(body)
        started = time.perf_counter()
        try:
            response = await self._session.request(
                request.method,
                upstream.target(request.raw_path, request.query),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=settings.connect_timeout, sock_read=settings.timeout
                ),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _failure(upstream, exc)
            metrics.observe_failure(upstream.name, failure.kind, time.perf_counter() - started)
            log.warning("upstream_failed", upstream=upstream.name, kind=failure.kind, error=failure.detail)
            raise failure from exc
        metrics.observe_head(upstream.name, response.status, time.perf_counter() - started)
        return ProxyResponse(upstream, response, started)

    async def probe(self, upstream: Upstream) -> CheckResult:
        """Whether the upstream answers `health_path` (any status below 500), reused for a few seconds."""
        cached = self._probes.get(upstream.name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.settings.upstream_status_ttl:
            return cached[1]
        async with self._probe_locks[upstream.name]:
            cached = self._probes.get(upstream.name)
            if cached is not None and time.monotonic() - cached[0] < self.settings.upstream_status_ttl:
                return cached[1]
            result = await self._probe(upstream)
            self._probes[upstream.name] = (time.monotonic(), result)
            return result

    async def _probe(self, upstream: Upstream) -> CheckResult:
        assert self._session is not None
        down: CheckStatus = "down" if upstream.settings.required else "degraded"
        data: dict[str, object] = {"prefix": upstream.prefix, "required": upstream.settings.required}
        timeout = self.settings.upstream_probe_timeout
        started = time.perf_counter()
        try:
            async with self._session.get(
                URL(upstream.origin + (upstream.base_path + upstream.settings.health_path), encoded=True),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _failure(upstream, exc)
            detail = f"no answer within {timeout:g}s" if failure.kind == "timeout" else "unreachable"
            return CheckResult(status=down, detail=detail, data=data)
        data["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        data["status_code"] = status
        if status >= 500:
            return CheckResult(status=down, detail=f"answered {status}", data=data)
        return CheckResult(status="ok", data=data)


async def _pieces(body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    # aiohttp takes an async iterator of bytes as a streamed payload.
    async for piece in body:
        if piece:
            yield piece
