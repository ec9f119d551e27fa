"""JSON-RPC transport for the local node: websocket (calls, subscriptions) and HTTP POST (calls), one port.

`ws://HOST:PORT` is what turbobt and bittensor connect to; `curl -d '{"jsonrpc":"2.0","id":1,
"method":"chain_getHeader","params":[]}' http://HOST:PORT` works for reads.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from app.devchain.node.node import LocalNode, RpcError

log = structlog.get_logger(__name__)


class WebSocketSession:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        async with self._lock:
            await self.ws.send_str(json.dumps(message))

    async def notify(self, method: str, subscription: str, result: Any) -> None:
        await self.send(
            {"jsonrpc": "2.0", "method": method, "params": {"subscription": subscription, "result": result}}
        )


async def answer(node: LocalNode, session: WebSocketSession | None, request: Any) -> dict[str, Any]:
    """One JSON-RPC request object in, one response object out (never raises)."""
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}
    request_id = request.get("id")
    try:
        result = await node.handle(session, request["method"], request.get("params") or [])
    except RpcError as exc:
        return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}
    except Exception as exc:
        log.exception("localnet_rpc_failed", method=request["method"])
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": -32603, "message": f"Internal error: {exc}"},
        }
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


async def answer_payload(node: LocalNode, session: WebSocketSession | None, raw: str | bytes) -> Any:
    try:
        payload = json.loads(raw)
    except ValueError:
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    if isinstance(payload, list):
        return [await answer(node, session, item) for item in payload]
    return await answer(node, session, payload)


def create_app(node: LocalNode) -> web.Application:
    async def root(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response(await answer_payload(node, None, await request.read()))
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, heartbeat=None)
        if not ws.can_prepare(request).ok:
            return web.Response(text="pylon localnet: connect over websocket, or POST JSON-RPC\n")
        await ws.prepare(request)
        session = WebSocketSession(ws)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT or message.type == WSMsgType.BINARY:
                    await session.send(await answer_payload(node, session, message.data))
        finally:
            node.drop_session(session)
        return ws

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("GET", "/", root)
    app.router.add_route("POST", "/", root)
    return app


class LocalnetServer:
    """Run a node on HOST:PORT inside the current event loop (port 0 picks a free one)."""

    def __init__(self, node: LocalNode, host: str = "127.0.0.1", port: int = 9944) -> None:
        self.node = node
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(create_app(self.node), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.node.start()
        log.info("localnet_listening", url=self.url, block_time=self.node.block_time)

    async def stop(self) -> None:
        await self.node.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalnetServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
