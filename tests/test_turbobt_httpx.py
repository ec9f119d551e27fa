"""turbobt pins httpx~=0.26; the uv override installs 0.28: turbobt still builds JSON-RPC requests on it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import requires, version
from typing import Any

import httpx
import pytest
import turbobt
from turbobt.substrate.client import Substrate
from turbobt.substrate.exceptions import SubstrateException
from turbobt.substrate.transports.http import HTTPTransport

BLOCK_HASH = "0x" + "ab" * 32


class JsonRpcNode(BaseHTTPRequestHandler):
    """A loopback stand-in for a subtensor node's HTTP JSON-RPC endpoint; records what arrives."""

    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if body["method"] == "chain_getBlockHash":
            reply = {"jsonrpc": "2.0", "id": body["id"], "result": BLOCK_HASH}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": body["id"],
                "error": {"code": -32601, "message": "Method not found"},
            }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def node() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Node", (JsonRpcNode,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_override_installs_httpx_028_against_turbobt_pin() -> None:
    assert httpx.__version__.startswith("0.28.")
    assert version("httpx") == httpx.__version__
    # The pin we override is still turbobt's declared requirement (if it goes, so can the override).
    assert any(req.replace(" ", "").startswith("httpx~=0.26") for req in requires("turbobt") or [])
    assert turbobt.Bittensor is not None


async def test_turbobt_sends_a_json_rpc_request_through_httpx(node: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = node
    async with Substrate(url) as substrate:
        assert isinstance(substrate._transport, HTTPTransport)
        assert isinstance(substrate._transport._client, httpx.AsyncClient)
        assert await substrate.chain.getBlockHash(0) == BLOCK_HASH
        with pytest.raises(SubstrateException, match="Method not found"):
            await substrate.rpc(method="system_nope", params={})

    first, second = received
    assert first["path"] == "/"
    assert first["headers"]["Accept"] == "application/json"
    assert first["headers"]["User-Agent"].startswith("python-httpx/0.28")
    assert first["body"] == {"method": "chain_getBlockHash", "params": {"hash": 0}, "id": 1, "jsonrpc": "2.0"}
    assert second["body"]["method"] == "system_nope"
    assert second["body"]["id"] == 2


async def test_turbobt_bittensor_client_builds_on_the_http_transport(
    node: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = node
    async with turbobt.Bittensor(url) as bittensor:
        assert await bittensor.subtensor.chain.getBlockHash(7) == BLOCK_HASH
    assert received[-1]["body"]["params"] == {"hash": 7}
