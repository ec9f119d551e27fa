"""A small HTTP/1.1 client for talking to model servers: keep-alive pools, llhttp parsing, nothing else.

aiohttp spent ~100 µs of Python per proxied request (response objects, multidicts, timers, tracing), more
than the rest of Pylon's hot path. This client does only what forwarding to an OpenAI-compatible server
needs: one `transport.write` per request, httptools' C parser (llhttp, as in uvicorn) for the answer, a
stack of idle connections per origin, and timers from `loop.call_later` instead of timeout contexts.

    pool = UpstreamPool()
    target = pool.target("POST", "http://127.0.0.1:8000/v1/chat/completions", {"Authorization": ...})
    reply = await pool.request(target, body, read_timeout=300)    # reply.status, reply.body (bytes)
    stream = await pool.request(target, body, read_timeout=300, stream=True)
    async for piece in stream: ...                                 # then `await stream.aclose()`

Every failure (connect error, reset, EOF mid-answer, parser error, timeout) raises `UpstreamError`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import httptools

USER_AGENT = "pylon"
# Response headers kept (lower-case); the rest are skipped without building anything.
WANTED_HEADERS = frozenset(
    {b"content-type", b"content-length", b"transfer-encoding", b"connection", b"retry-after"}
)
# A streamed body buffered beyond this (the consumer lags) pauses reading from the socket, so the server
# feels TCP backpressure instead of Pylon buffering a whole answer; reading resumes once drained.
HIGH_WATER = 256 * 1024
# Below uvicorn's (vLLM) and llama.cpp's 5 s server-side keep-alive, so we usually close first and rarely
# hit the race where the server closes a connection just as a request is written on it.
KEEPALIVE_TIMEOUT = 4.0
MAX_IDLE_PER_ORIGIN = 128


class UpstreamError(Exception):
    """The request got no complete answer: connect error, reset, EOF mid-answer, bad HTTP, timeout."""


class _NoAnswer(UpstreamError):
    """The connection closed before any byte of the answer: on a reused connection, the keep-alive race."""


class Target:
    """A prepared request line and headers for one URL; build once, send many times."""

    __slots__ = ("connect_timeout", "head", "origin", "sends_body")

    def __init__(self, origin: _Origin, head: bytes, sends_body: bool, connect_timeout: float) -> None:
        self.origin = origin
        self.head = head
        self.sends_body = sends_body
        self.connect_timeout = connect_timeout


class UpstreamResponse:
    """One answer: `status`, the wanted `headers` (lower-case bytes), and the body.

    Non-streamed answers arrive whole (`body`); streamed ones are read with `async for piece in response`
    or `await response.read()`, each read waiting at most the read timeout. A streamed response must be
    closed (`aclose`): one not read to its end drops its connection, so the server stops generating.
    """

    __slots__ = (
        "_conn",
        "_paused",
        "_timeout",
        "body",
        "buffered",
        "done",
        "error",
        "headers",
        "interim",
        "parts",
        "received",
        "status",
        "stream",
        "until_eof",
        "waiter",
    )

    def __init__(self, conn: _Connection, stream: bool, timeout: float) -> None:
        self._conn: _Connection | None = conn
        self.stream = stream
        self._timeout = timeout
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.parts: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._paused = False
        self.done = False
        self.error: UpstreamError | None = None
        self.interim = False
        self.until_eof = False
        self.received = False
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the protocol's next event, at most the read timeout; any interruption drops the link."""
        conn = self._conn
        assert conn is not None
        loop = conn.loop
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(self._timeout, self._time_out)
        try:
            await waiter
        except BaseException:
            # Cancelled (the client left): the answer will not be read to its end.
            self.close()
            raise
        finally:
            timer.cancel()
            self.waiter = None

    def _time_out(self) -> None:
        conn = self._conn
        # Only while this answer still owns the connection (it may be back in the pool, serving another).
        if conn is not None and conn.response is self:
            conn.fail(UpstreamError(f"timed out after {self._timeout:g} s waiting for the backend"))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        while True:
            if self.parts:
                yield self.take()
            elif self.error is not None:
                raise self.error
            elif self.done:
                return
            else:
                await self.wait()

    def take(self) -> bytes:
        parts = self.parts
        piece = parts.popleft() if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.buffered = 0
        if self._paused:
            self._paused = False
            if self._conn is not None:
                self._conn.resume()
        return piece

    def pause(self) -> None:
        if not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause()

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        if not self.stream:
            return self.body
        chunks = [piece async for piece in self]
        return b"".join(chunks)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Done with the answer: an unfinished one drops its connection (never returned to the pool)."""
        if not self.done and self._conn is not None:
            self._conn.abort()
        self._conn = None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds received bytes to llhttp, which calls back `on_*` below."""

    def __init__(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            # Bytes while idle (a 408, garbage): this connection's framing can no longer be trusted.
            self.abort()
            return
        response.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError(f"invalid HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.origin.forget(self)
        response = self.response
        if response is None:
            return
        if exc is None and response.until_eof and response.status:
            # A body delimited by the connection closing: EOF is its end.
            self.finish(keep_alive=False)
        elif not response.received:
            self.fail(_NoAnswer("the connection closed before any answer" + (f" ({exc})" if exc else "")))
        else:
            self.fail(UpstreamError("the connection closed mid-answer" + (f" ({exc})" if exc else "")))

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in WANTED_HEADERS:
            self.response.headers[name] = value  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        if status < 200:
            # 100 Continue, 103 Early Hints: a final answer follows on the same connection.
            response.interim = True
            return
        response.status = status
        headers = response.headers
        response.until_eof = (
            b"content-length" not in headers
            and b"chunked" not in headers.get(b"transfer-encoding", b"").lower()
            and status not in (204, 304)
        )
        if response.stream:
            response.wake()

    def on_body(self, data: bytes) -> None:
        response = self.response
        assert response is not None
        response.parts.append(data)
        if response.stream:
            response.buffered += len(data)
            if response.buffered > HIGH_WATER:
                response.pause()
            response.wake()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.interim:
            response.interim = False
            response.headers = {}
            return
        self.finish(keep_alive=self.parser.should_keep_alive())

    # --- the exchange ---

    async def exchange(self, data: bytes, stream: bool, read_timeout: float) -> UpstreamResponse:
        """Write the request; wait for the whole answer (or its head, streaming), at most `read_timeout`."""
        response = UpstreamResponse(self, stream, read_timeout)
        self.response = response
        self.transport.write(data)  # type: ignore[union-attr]
        await response.wait()
        if response.error is not None:
            raise response.error
        if not stream:
            parts = response.parts
            response.body = b"".join(parts)
            parts.clear()
        return response

    def finish(self, keep_alive: bool) -> None:
        response = self.response
        assert response is not None
        response.done = True
        response._conn = None
        self.response = None
        response.wake()
        if keep_alive and not self.closed:
            self.resume()
            self.origin.release(self)
        else:
            self.close()

    def fail(self, error: UpstreamError) -> None:
        response = self.response
        if response is not None:
            self.response = None
            response.error = error
            response.wake()
        self.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed and not self.transport.is_reading():
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now: whatever is left of an answer is not wanted."""
        self.closed = True
        self.response = None
        if self.transport is not None:
            self.transport.abort()


class _Origin:
    """The connections to one scheme://host:port: a stack of idle ones (most recently used on top)."""

    def __init__(self, pool: UpstreamPool, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.pool = pool
        self.host = host
        self.port = port
        self.tls = tls
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self.sweeper: asyncio.TimerHandle | None = None

    def acquire(self) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:  # aborted, its connection_lost not yet delivered
                continue
            if conn.loop.time() - conn.idle_since < self.pool.keepalive_timeout:
                return conn
            # The most recent idle connection is too old, so are all below it.
            conn.close()
            self.close_idle()
        return None

    async def connect(self, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, loop)
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            message = f"connect to {self.host}:{self.port} timed out after {connect_timeout:g} s"
            raise UpstreamError(message) from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if self.pool.closed:  # closed while this connect was under way
            conn.abort()
            raise UpstreamError("the upstream pool was closed")
        self.open.add(conn)
        return conn

    def release(self, conn: _Connection) -> None:
        if self.pool.closed or len(self.idle) >= self.pool.max_idle:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        self.idle.append(conn)
        if self.sweeper is None:
            self.sweeper = conn.loop.call_later(self.pool.keepalive_timeout, self.sweep)

    def forget(self, conn: _Connection) -> None:
        """The connection closed (either side): it must never be handed out again."""
        self.open.discard(conn)
        if self.idle and conn in self.idle:
            self.idle.remove(conn)

    def sweep(self) -> None:
        """Close connections idle longer than the keep-alive timeout (oldest at the bottom of the stack)."""
        self.sweeper = None
        idle = self.idle
        if not idle:
            return
        loop = idle[0].loop
        deadline = loop.time() - self.pool.keepalive_timeout
        while idle and idle[0].idle_since <= deadline:
            idle.pop(0).close()
        if idle:
            self.sweeper = loop.call_later(idle[0].idle_since - deadline, self.sweep)

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.close_idle()
        for conn in list(self.open):
            conn.fail(UpstreamError("the upstream pool was closed"))


class UpstreamPool:
    """The worker's keep-alive connections to every backend origin.

    No cap on connections in use: their number follows the requests in flight (a cap would queue
    requests inside Pylon, where nobody sees them). Idle ones are capped per origin and closed after
    `keepalive_timeout`.
    """

    def __init__(
        self,
        *,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        max_idle: int = MAX_IDLE_PER_ORIGIN,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.max_idle = max_idle
        self.ssl_context = ssl_context
        self.closed = False
        self.origins: dict[tuple[str, str, int], _Origin] = {}

    def target(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        connect_timeout: float = 5.0,
    ) -> Target:
        """Prepare `method url` with `headers` (Host, User-Agent and Content-Length are added)."""
        if method == "HEAD":  # llhttp cannot be told that a HEAD answer has no body despite its length
            raise ValueError("HEAD requests are not supported")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        key = (parts.scheme, parts.hostname, port)
        origin = self.origins.get(key)
        if origin is None:
            tls = None
            if parts.scheme == "https":
                tls = self.ssl_context or ssl.create_default_context()
            origin = self.origins[key] = _Origin(self, parts.hostname, port, tls)
        host = parts.hostname if port == default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # IPv6 literal
            host = f"[{parts.hostname}]" if port == default_port else f"[{parts.hostname}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
        for name, value in (headers or {}).items():
            if any(c in name + value for c in "\r\n\0"):  # would split or end the header block
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}")
        sends_body = method not in ("GET", "HEAD", "DELETE", "OPTIONS")
        # Content-Length and the blank line are appended per request.
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return Target(origin, head, sends_body, connect_timeout)

    async def request(
        self, target: Target, body: bytes = b"", *, read_timeout: float, stream: bool = False
    ) -> UpstreamResponse:
        """Send the request; the whole answer (or, with `stream`, its head), waiting at most `read_timeout`.

        A request on a reused connection that closes before any byte of the answer is sent again once
        on a new connection: the server closed it while idle, as servers with short keep-alives do.
        """
        if self.closed:
            raise UpstreamError("the upstream pool is closed")
        if target.sends_body or body:
            data = b"%sContent-Length: %d\r\n\r\n%s" % (target.head, len(body), body)
        else:
            data = target.head + b"\r\n"
        origin = target.origin
        conn = origin.acquire()
        if conn is not None:
            try:
                return await conn.exchange(data, stream, read_timeout)
            except _NoAnswer:
                pass
        conn = await origin.connect(target.connect_timeout)
        return await conn.exchange(data, stream, read_timeout)

    async def close(self) -> None:
        self.closed = True
        for origin in self.origins.values():
            origin.close()
