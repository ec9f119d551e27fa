"""Bare pass-through proxies, one per HTTP client, to measure the upstream client on its own.

`bench_inference.py` runs each under granian (`inference_proxies:httpx_app` / `:aiohttp_app` /
`:upstream_app`, the last on Pylon's own client, app/inference/upstream.py) in front of the fake model
server, so the only difference between them is the client library.
"""

from __future__ import annotations

import os
from typing import Any

UPSTREAM = os.environ.get("PROXY_UPSTREAM", "http://127.0.0.1:9000") + "/v1/chat/completions"


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Any, send: Any, start: Any, stop: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await start()
            await send({"type": "lifespan.startup.complete"})
        else:
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _reply(send: Any, status: int, content: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


_clients: dict[str, Any] = {}


async def httpx_app(scope: Any, receive: Any, send: Any) -> None:
    import httpx

    if scope["type"] == "lifespan":

        async def start() -> None:
            _clients["httpx"] = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)
            )

        async def stop() -> None:
            await _clients["httpx"].aclose()

        await _lifespan(receive, send, start, stop)
        return
    response = await _clients["httpx"].post(UPSTREAM, content=await _body(receive))
    await _reply(send, response.status_code, response.content)


async def aiohttp_app(scope: Any, receive: Any, send: Any) -> None:
    import aiohttp

    if scope["type"] == "lifespan":

        async def start() -> None:
            _clients["aiohttp"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def stop() -> None:
            await _clients["aiohttp"].close()

        await _lifespan(receive, send, start, stop)
        return
    async with _clients["aiohttp"].post(UPSTREAM, data=await _body(receive)) as response:
        await _reply(send, response.status, await response.read())


async def upstream_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        from app.inference.upstream import UpstreamPool

        async def start() -> None:
            pool = _clients["upstream"] = UpstreamPool()
            _clients["target"] = pool.target("POST", UPSTREAM, {"Content-Type": "application/json"})

        async def stop() -> None:
            await _clients["upstream"].close()

        await _lifespan(receive, send, start, stop)
        return
    reply = await _clients["upstream"].request(_clients["target"], await _body(receive), read_timeout=300)
    await _reply(send, reply.status, reply.body)
