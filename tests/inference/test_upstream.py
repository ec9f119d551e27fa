"""Pylon's upstream HTTP/1.1 client (app/inference/upstream.py) against real servers over loopback.

The fake model server covers the OpenAI wire format; small raw asyncio servers written here answer with
the framings and failures model servers produce (chunked, close-delimited, `Connection: close`, bodies
cut short, resets, stalls). Each test runs on both asyncio's loop and uvloop (granian's).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from app.inference.backends.base import BackendFailure, UpstreamClientError
from app.inference.backends.openai_compatible import OpenAIBackend
from app.inference.schemas import ChatCompletionRequest
from app.inference.upstream import HIGH_WATER, UpstreamError, UpstreamPool
from app.settings import BackendSettings
from tests.conftest import free_port

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there world"}]}
WAIT = 10  # upper bound for events that must happen, never a speed requirement

Handler = Callable[["Peer"], Awaitable[None]]


class Peer:
    """One accepted connection on a RawServer, with what it has read."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
        self.eof = asyncio.Event()

    async def read_request(self) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
        """The next request (request line, headers, body), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *lines = head[:-4].split(b"\r\n")
        headers = {}
        for item in lines:
            name, _, value = item.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        self.requests.append((line, headers, body))
        return line, headers, body

    async def answer(self, body: bytes = b"ok", *extra: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"".join(h + b"\r\n" for h in extra) + b"\r\n" + body)
        await self.writer.drain()

    async def wait_eof(self) -> None:
        """Until the client closes its end (what a model server sees when the client gives up)."""
        while await self.reader.read(65536):
            pass

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class RawServer:
    """An asyncio server on a loopback port; `handler(peer)` plays the model server for a connection."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.peers: list[Peer] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for peer in self.peers:
            peer.writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(len(self.peers), reader, writer)
        self.peers.append(peer)
        try:
            await self.handler(peer)
            await peer.wait_eof()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            peer.eof.set()
            writer.close()


async def keep_answering(peer: Peer) -> None:
    """Answer every request on the connection with the connection's index."""
    while await peer.read_request() is not None:
        await peer.answer(b"%d" % peer.index)


@pytest.fixture
async def pool():
    pool = UpstreamPool()
    yield pool
    await pool.close()


async def get(pool: UpstreamPool, url: str, read_timeout: float = WAIT, **kwargs):
    return await pool.request(pool.target("GET", url), read_timeout=read_timeout, **kwargs)


# --- against the fake model server ---


async def test_chat_stream_error_and_models_against_the_fake_model_server(fake_backend, pool):
    chat = pool.target(
        "POST", f"{fake_backend.url}/v1/chat/completions", {"Content-Type": "application/json"}
    )
    reply = await pool.request(chat, json.dumps(CHAT).encode(), read_timeout=WAIT)
    assert reply.status == 200 and reply.headers[b"content-type"] == b"application/json"
    assert json.loads(reply.body)["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}

    body = json.dumps({**CHAT, "stream": True, "stream_options": {"include_usage": True}}).encode()
    stream = await pool.request(chat, body, read_timeout=WAIT, stream=True)
    assert stream.status == 200 and stream.headers[b"content-type"].startswith(b"text/event-stream")
    text = b"".join([piece async for piece in stream]).decode()
    await stream.aclose()
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 8

    missing = await pool.request(chat, json.dumps({**CHAT, "model": "nope"}).encode(), read_timeout=WAIT)
    assert missing.status == 404 and json.loads(missing.body)["error"]["code"] == "model_not_found"

    models = await get(pool, f"{fake_backend.url}/v1/models")
    assert [m["id"] for m in json.loads(models.body)["data"]] == ["fake-model"]
    # Four requests, one after another: all on one kept-alive connection.
    assert len(pool.origins) == 1 and len(next(iter(pool.origins.values())).open) == 1


async def test_openai_backend_reports_usage_and_maps_failures(fake_backend, pool):
    backend = OpenAIBackend(BackendSettings(name="a", base_url=fake_backend.url, read_timeout=WAIT), pool)
    request = ChatCompletionRequest(**CHAT)  # type: ignore[arg-type]
    reply = await backend.complete("chat", json.dumps(CHAT).encode(), request)
    assert reply.status == 200 and reply.usage is not None and reply.usage.completion_tokens == 8

    stream = await backend.open_stream("chat", json.dumps({**CHAT, "stream": True}).encode(), request, False)
    events = [event async for event in stream]
    await stream.aclose()
    assert stream.usage is not None and stream.usage.prompt_tokens == 3
    assert stream.chunks == 9 and all(b'"usage"' not in e or b'"choices":[]' not in e for e in events)

    assert await backend.list_models() == ["fake-model"]
    with pytest.raises(UpstreamClientError) as refused:
        await backend.open_stream("chat", json.dumps({**CHAT, "model": "x"}).encode(), request, False)
    assert refused.value.status == 404 and b"model_not_found" in refused.value.body
    fake_backend.configure(fail="500")
    with pytest.raises(BackendFailure) as failed:
        await backend.complete("chat", json.dumps(CHAT).encode(), request)
    assert failed.value.status == 500


async def test_openai_backend_stream_cut_by_the_backend_is_a_backend_failure(fake_backend_factory, pool):
    fake = fake_backend_factory(fail_after=3)
    backend = OpenAIBackend(BackendSettings(name="a", base_url=fake.url, read_timeout=WAIT), pool)
    request = ChatCompletionRequest(**CHAT)  # type: ignore[arg-type]
    stream = await backend.open_stream("chat", json.dumps({**CHAT, "stream": True}).encode(), request, False)
    received = []
    with pytest.raises(BackendFailure, match="stream broke"):
        async for event in stream:
            received.append(event)
    await stream.aclose()
    assert len(received) == 3


# --- the request on the wire ---


async def test_request_line_headers_and_body(pool):
    async with RawServer(keep_answering) as server:
        target = pool.target(
            "POST",
            f"{server.url}/v1/chat/completions?x=1",
            {"Content-Type": "application/json", "Authorization": "Bearer s3"},
        )
        await pool.request(target, b'{"a": 1}', read_timeout=WAIT)
        await get(pool, f"{server.url}/v1/models")
    (line, headers, body), (get_line, get_headers, _) = server.peers[0].requests
    assert line == b"POST /v1/chat/completions?x=1 HTTP/1.1"
    assert headers == {
        b"host": b"127.0.0.1:%d" % server.port,
        b"user-agent": b"pylon",
        b"content-type": b"application/json",
        b"authorization": b"Bearer s3",
        b"content-length": b"8",
    }
    assert body == b'{"a": 1}'
    assert get_line == b"GET /v1/models HTTP/1.1" and b"content-length" not in get_headers


def test_header_values_with_line_breaks_and_head_requests_are_refused():
    with pytest.raises(ValueError, match="line break"):
        UpstreamPool().target("POST", "http://127.0.0.1:1/x", {"Authorization": "Bearer a\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="HEAD"):
        UpstreamPool().target("HEAD", "http://127.0.0.1:1/x")


# --- response framing ---


async def test_chunked_body_whole_and_streamed(pool):
    release = asyncio.Event()

    async def chunked(peer: Peer) -> None:
        while await peer.read_request() is not None:
            peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await peer.writer.drain()
            await release.wait()
            peer.writer.write(b"6\r\n world\r\n0\r\n\r\n")

    async with RawServer(chunked) as server:
        stream = await get(pool, server.url, stream=True)
        pieces = aiter(stream)
        assert await anext(pieces) == b"hello"  # delivered before the rest exists
        release.set()
        assert b"".join([piece async for piece in pieces]) == b" world"
        await stream.aclose()
        reply = await get(pool, server.url)
    assert reply.body == b"hello world" and reply.headers[b"transfer-encoding"] == b"chunked"
    assert len(server.peers) == 1, "a chunked answer read to its end leaves the connection reusable"


async def test_close_delimited_body(pool):
    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
        await peer.writer.drain()
        peer.writer.write(b"this")
        peer.writer.close()

    async with RawServer(until_close) as server:
        first = await get(pool, server.url)
        stream = await get(pool, server.url, stream=True)
        streamed = await stream.read()
    assert first.body == streamed == b"all of this"
    assert len(server.peers) == 2


async def test_connection_close_is_honoured_even_if_the_server_keeps_the_socket_open(pool):
    async def says_close(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.answer(b"%d" % peer.index, b"Connection: close")

    async with RawServer(says_close) as server:
        replies = [await get(pool, server.url) for _ in range(2)]
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
    assert [r.body for r in replies] == [b"0", b"1"]
    assert replies[0].headers[b"connection"] == b"close"


async def test_interim_1xx_answers_are_skipped(pool):
    async def early_hints(peer: Peer) -> None:
        while await peer.read_request() is not None:
            peer.writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await peer.answer(b"final", b"Retry-After: 3")

    async with RawServer(early_hints) as server:
        replies = [await get(pool, server.url) for _ in range(2)]
    assert [(r.status, r.body) for r in replies] == [(200, b"final")] * 2
    assert replies[0].headers[b"retry-after"] == b"3" and b"link" not in replies[0].headers
    assert len(server.peers) == 1


# --- failures ---


async def test_body_cut_midway_is_an_error_and_the_connection_is_dropped(pool):
    async def cut(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await peer.writer.drain()
        peer.writer.close()

    async with RawServer(cut) as server:
        with pytest.raises(UpstreamError, match="closed mid-answer"):
            await get(pool, server.url)
        stream = await get(pool, server.url, stream=True)
        with pytest.raises(UpstreamError, match="closed mid-answer"):
            await stream.read()
    assert len(server.peers) == 2


async def test_invalid_http_is_an_error(pool):
    async def garbage(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"SPDY/9 banana\r\n\r\n")

    async with RawServer(garbage) as server:
        with pytest.raises(UpstreamError, match="invalid HTTP"):
            await get(pool, server.url)
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)


async def test_reset_on_a_reused_connection_is_retried_once_on_a_new_one(pool):
    async def second_request_resets(peer: Peer) -> None:
        await peer.read_request()
        await peer.answer(b"%d" % peer.index)
        if peer.index == 0:
            await peer.read_request()
            peer.reset()  # the keep-alive race: the request met a connection the server dropped
            return
        await keep_answering(peer)

    async with RawServer(second_request_resets) as server:
        first = await get(pool, server.url)
        second = await get(pool, server.url)
    assert (first.body, second.body) == (b"0", b"1")
    assert [len(peer.requests) for peer in server.peers] == [2, 1]


async def test_the_retry_happens_once_and_a_fresh_connection_never_retries(pool):
    async def closes_without_answer(peer: Peer) -> None:
        await peer.read_request()
        if peer.index == 0:
            await peer.answer(b"0")
            await peer.read_request()
        peer.writer.close()

    async with RawServer(closes_without_answer) as server:
        await get(pool, server.url)
        with pytest.raises(UpstreamError, match="before any answer"):
            await get(pool, server.url)
        # The reused connection, then exactly one new one.
        assert len(server.peers) == 2
        with pytest.raises(UpstreamError, match="before any answer"):
            await get(pool, server.url)
        assert len(server.peers) == 3


async def test_slow_server_times_out_whole_and_between_stream_reads(pool):
    async def slow(peer: Peer) -> None:
        await peer.read_request()
        if peer.index == 1:
            peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await peer.wait_eof()

    async with RawServer(slow) as server:
        with pytest.raises(UpstreamError, match="timed out"):
            await get(pool, server.url, read_timeout=0.2)
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        stream = await get(pool, server.url, read_timeout=0.2, stream=True)
        pieces = aiter(stream)
        assert await anext(pieces) == b"first"
        with pytest.raises(UpstreamError, match="timed out"):
            await anext(pieces)
        await asyncio.wait_for(server.peers[1].eof.wait(), WAIT)


async def test_refused_port_is_a_connect_error(pool):
    with pytest.raises(UpstreamError, match="cannot connect"):
        await get(pool, f"http://127.0.0.1:{free_port()}/v1/models")


# --- the pool ---


async def test_pool_reuses_the_most_recently_used_connection(pool):
    go = {b"/a": asyncio.Event(), b"/b": asyncio.Event()}

    async def on_cue(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            path = request[0].split()[1]
            if path in go:
                await go[path].wait()
            await peer.answer(b"%d" % peer.index)

    async with RawServer(on_cue) as server:
        a = asyncio.create_task(get(pool, server.url + "/a"))
        b = asyncio.create_task(get(pool, server.url + "/b"))
        while sum(len(peer.requests) for peer in server.peers) < 2:
            await asyncio.sleep(0.01)
        go[b"/b"].set()
        b_reply = await b
        go[b"/a"].set()
        a_reply = await a  # released last
        following = [await get(pool, server.url) for _ in range(3)]
    assert {a_reply.body, b_reply.body} == {b"0", b"1"}
    assert [r.body for r in following] == [a_reply.body] * 3
    assert len(server.peers) == 2


async def test_idle_connections_are_capped():
    pool = UpstreamPool(max_idle=1)
    started = asyncio.Event()
    go = asyncio.Event()

    async def hold(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if len(peer.requests) == 1 and peer.index < 2:
                if peer.index == 1:
                    started.set()
                await go.wait()
            await peer.answer()

    async with RawServer(hold) as server:
        both = asyncio.gather(get(pool, server.url), get(pool, server.url))
        await asyncio.wait_for(started.wait(), WAIT)
        go.set()
        await both
        # Two connections were in use; only one may stay idle, the other is closed.
        for _ in range(WAIT * 100):
            if any(peer.eof.is_set() for peer in server.peers):
                break
            await asyncio.sleep(0.01)
        assert [peer.eof.is_set() for peer in server.peers].count(True) == 1
        await get(pool, server.url)
        await pool.close()
    assert len(server.peers) == 2
    assert sum(len(peer.requests) for peer in server.peers) == 3


async def test_idle_connections_close_after_the_keepalive_timeout():
    pool = UpstreamPool(keepalive_timeout=0.1)
    async with RawServer(keep_answering) as server:
        await get(pool, server.url)
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)  # closed by Pylon's sweep
        reply = await get(pool, server.url)
        await pool.close()
    assert reply.body == b"1"


async def test_a_connection_the_server_closed_while_idle_is_never_handed_out():
    pool = UpstreamPool(keepalive_timeout=3600)  # no sweep: only connection_lost can drop it

    async def one_then_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.answer(b"%d" % peer.index)
        peer.writer.close()

    async with RawServer(one_then_close) as server:
        await get(pool, server.url)
        origin = next(iter(pool.origins.values()))
        for _ in range(WAIT * 100):
            if not origin.idle:
                break
            await asyncio.sleep(0.01)
        assert not origin.idle, "the closed connection stayed in the pool"
        second = await get(pool, server.url)
        await pool.close()
    assert second.body == b"1"
    # No retry was needed: the dead connection never carried the second request.
    assert [len(peer.requests) for peer in server.peers] == [1, 1]


async def test_cancelling_mid_stream_closes_the_connection(pool):
    async def endless(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntick\r\n")
        await peer.writer.drain()

    async with RawServer(endless) as server:
        stream = await get(pool, server.url, stream=True)
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)


async def test_closing_a_stream_early_drops_its_connection(pool):
    async with RawServer(lambda peer: _stream_forever(peer)) as server:
        stream = await get(pool, server.url, stream=True)
        assert await anext(aiter(stream)) == b"tick"
        await stream.aclose()
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        await get(pool, server.url, stream=True)
    assert len(server.peers) == 2


async def _stream_forever(peer: Peer) -> None:
    await peer.read_request()
    peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntick\r\n")
    await peer.writer.drain()


async def test_a_lagging_stream_consumer_pauses_reading(pool):
    size = 64 * 1024
    pieces = 512  # 32 MiB: more than loopback's socket buffers hold, so the server must wait for Pylon
    sent = asyncio.Event()

    async def firehose(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (size * pieces))
        for index in range(pieces):
            peer.writer.write(bytes([index % 256]) * size)
            await peer.writer.drain()
        sent.set()

    async with RawServer(firehose) as server:
        stream = await get(pool, server.url, stream=True)
        for _ in range(WAIT * 100):
            if stream.buffered > HIGH_WATER:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # room for more bytes to arrive, were reading not paused
        # One socket read (at most 256 KiB) may land after the pause.
        assert HIGH_WATER < stream.buffered <= HIGH_WATER + 256 * 1024 + size
        assert not sent.is_set()
        body = await stream.read()
    assert body == b"".join(bytes([index % 256]) * size for index in range(pieces))


async def test_closing_the_pool_fails_requests_in_flight(pool):
    async with RawServer(lambda peer: peer.read_request()) as server:
        task = asyncio.create_task(get(pool, server.url))
        while not server.peers or not server.peers[0].requests:
            await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(UpstreamError, match="closed"):
            await task
        with pytest.raises(UpstreamError, match="closed"):
            await get(pool, server.url)


# --- https ---


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
        command += " -addext subjectAltName=IP:127.0.0.1"
        args = [*command.split(), "-keyout", str(key), "-out", str(cert)]
        subprocess.run(args, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a test certificate: {exc}")
    return cert, key


async def test_https(certificate):
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    pool = UpstreamPool(ssl_context=ssl.create_default_context(cafile=str(cert)))
    async with RawServer(keep_answering, ssl_context=server_context) as server:
        replies = [await get(pool, server.url) for _ in range(2)]
        untrusted = UpstreamPool()
        with pytest.raises(UpstreamError, match="cannot connect"):
            await get(untrusted, server.url)
        await pool.close()
        await untrusted.close()
    assert [r.body for r in replies] == [b"0", b"0"]
