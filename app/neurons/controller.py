"""Neurons routes: the metagraph (latest and at a block), one hotkey, hyperparameters and certificates.

The latest metagraph is served as bytes encoded once per block by the metagraph cache: a request does a
dict lookup and, with `If-None-Match`, may get a 304. `X-Pylon-Block` names the block; when the chain is
unreachable the last metagraph is still served, with `Age` and `X-Pylon-Stale: true`.
"""

from __future__ import annotations

import math
from typing import Any

from litestar import Controller, Request, Response, Router, get, post
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_502_BAD_GATEWAY
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Send
from litestar.types import Scope as ASGIScope

from app.auth.scopes import Scope
from app.chain.client import (
    BlockNotFound,
    Certificate,
    CertificateKeypair,
    ChainError,
    ChainUnavailable,
    ExtrinsicFailed,
    Metagraph,
    UnknownNetuid,
)
from app.chain.metagraph import CachedMetagraph, MetagraphCache
from app.errors import http_exception_handler
from app.neurons.schemas import GenerateCertificateRequest, HyperparamsResponse, NeuronResponse
from app.neurons.service import CertificateNotFound, HotkeyNotFound, NeuronsService, NoWallet

READ = {"scope": Scope.NEURONS_READ}
JSON = "application/json"


def service_of(request: Request) -> NeuronsService:
    state = request.app.state
    service: NeuronsService | None = state.get("neurons_service")
    if service is None:
        service = NeuronsService(state.metagraph, state.chain, signer=lambda: state.get("wallet"))
        state.neurons_service = service
    return service


def metagraph_response(request: Request, cached: CachedMetagraph, stale: bool) -> Response[Any]:
    headers = {"etag": cached.etag, "x-pylon-block": str(cached.block.number)}
    if stale:
        age = request.app.state.metagraph.head_age()
        headers["age"] = str(math.floor(age)) if age is not None else "0"
        headers["x-pylon-stale"] = "true"
    if request.headers.get("if-none-match") == cached.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(cached.body, media_type=JSON, headers=headers)


def parse_block_number(raw: str) -> int:
    if not raw.isdigit():
        raise ValidationException(f"block number must be a non-negative integer, got {raw!r}")
    return int(raw)


class RawResponse:
    """An ASGI response of prebuilt bytes and headers: built once per metagraph, reused by every request."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        await self._send(send, self.headers)

    async def send_with(self, send: Send, header: tuple[bytes, bytes]) -> int:
        """Send this response with one more header (a fresh list: the prebuilt one is shared); returns
        the status."""
        await self._send(send, [*self.headers, header])
        return self.status

    async def _send(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": headers,
        }
        body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": self.body, "more_body": False}
        await send(start)
        await send(body)


def cached_response(scope: ASGIScope, cache: MetagraphCache, cached: CachedMetagraph) -> RawResponse:
    """The latest metagraph's prebuilt bytes and headers (a 304 for a matching `If-None-Match`)."""
    headers = cached.raw_headers
    stale = cache.is_stale()
    if stale:
        age = cache.head_age()
        headers = [*headers, (b"age", str(math.floor(age or 0)).encode()), (b"x-pylon-stale", b"true")]
    etag = cached.etag.encode()
    for name, value in scope["headers"]:
        if name == b"if-none-match" and value == etag:
            return RawResponse(304, [h for h in headers if h[0] != b"content-length"], b"")
    if stale:
        return RawResponse(200, headers, cached.body)
    response: RawResponse | None = cached.asgi_response
    if response is None:
        response = cached.asgi_response = RawResponse(200, headers, cached.body)
    return response


async def latest_response(scope: ASGIScope, netuid: int) -> ASGIApp:
    """The latest metagraph from the cache, waiting for the chain only while the cache is cold."""
    cache: MetagraphCache = scope["litestar_app"].state.metagraph
    cached = cache.peek(netuid)
    if cached is None:
        cached = await cache.latest(netuid)
    else:
        cache.count_hit()
    return cached_response(scope, cache, cached)


METAGRAPH_RESPONSES = {
    200: ResponseSpec(
        data_container=Metagraph, description="The metagraph, keyed by hotkey (bittensor-pylon's shape)."
    )
}


async def _at_block(request: Request, netuid: int, block_number: str) -> Response[Any]:
    cached = await service_of(request).at_block(netuid, parse_block_number(block_number))
    return metagraph_response(request, cached, stale=False)


class SubnetNeuronsController(Controller):
    path = "/subnet/{netuid:int}"
    tags = ["neurons"]

    @get("/neurons/latest", opt=READ, responses=METAGRAPH_RESPONSES)
    async def latest_neurons(self, scope: ASGIScope, netuid: FromPath[int]) -> ASGIApp:
        """The subnet's metagraph at the latest block: `{"block": {...}, "neurons": {hotkey: neuron}}`.

        Served from memory (refreshed once per block); honours `If-None-Match`. `X-Pylon-Block` names
        the block; while the chain is unreachable the last metagraph is served with `Age` and
        `X-Pylon-Stale: true`.
        """
        return await latest_response(scope, netuid)

    @get("/neurons/{block_number:str}", opt=READ)
    async def neurons_at_block(
        self, request: Request, netuid: FromPath[int], block_number: FromPath[str]
    ) -> Response[Metagraph]:
        """The subnet's metagraph at a block. 404 for a block in the future or no longer kept by the node."""
        return await _at_block(request, netuid, block_number)

    @get("/neurons/latest/{hotkey:str}", opt=READ)
    async def latest_neuron(
        self, request: Request, netuid: FromPath[int], hotkey: FromPath[str]
    ) -> NeuronResponse:
        """One neuron, by hotkey, at the latest block; 404 if the hotkey is not registered."""
        return await service_of(request).neuron(netuid, hotkey)

    @get("/hyperparams", opt=READ)
    async def hyperparams(self, request: Request, netuid: FromPath[int]) -> HyperparamsResponse:
        """The subnet's hyperparameters at the latest block (tempo, weights rate limit, commit-reveal...)."""
        return await service_of(request).hyperparams(netuid)

    @get("/certificates", opt=READ)
    async def certificates(self, request: Request, netuid: FromPath[int]) -> dict[str, Certificate]:
        """Every neuron certificate posted on the subnet, keyed by hotkey."""
        return await service_of(request).certificates(netuid)

    @get("/certificates/self", opt=READ)
    async def own_certificate(self, request: Request, netuid: FromPath[int]) -> Certificate:
        """The certificate of Pylon's own wallet hotkey; 404 if it has none."""
        return await service_of(request).own_certificate(netuid)

    @post("/certificates/self", opt={"scope": Scope.WEIGHTS_WRITE}, status_code=HTTP_201_CREATED)
    async def generate_certificate(
        self, request: Request, netuid: FromPath[int], data: JSONBody[GenerateCertificateRequest]
    ) -> CertificateKeypair:
        """Generate a certificate key pair for Pylon's wallet and post its public key on chain.

        The private key is in this answer only; Pylon does not keep it.
        """
        return await service_of(request).generate_certificate(netuid, data.algorithm)

    @get("/certificates/{hotkey:str}", opt=READ)
    async def certificate(
        self, request: Request, netuid: FromPath[int], hotkey: FromPath[str]
    ) -> Certificate:
        """One hotkey's certificate; 404 if it has none."""
        return await service_of(request).certificate(netuid, hotkey)


class DefaultNetuidNeuronsController(Controller):
    """bittensor-pylon's older short forms, for the subnet in `PYLON_NETUID`."""

    path = "/neurons"
    tags = ["neurons"]

    @get("/latest", opt=READ, responses=METAGRAPH_RESPONSES)
    async def latest_neurons(self, scope: ASGIScope) -> ASGIApp:
        """The `PYLON_NETUID` subnet's metagraph at the latest block."""
        return await latest_response(scope, scope["litestar_app"].state.settings.chain.netuid)

    @get("/{block_number:str}", opt=READ)
    async def neurons_at_block(self, request: Request, block_number: FromPath[str]) -> Response[Metagraph]:
        """The `PYLON_NETUID` subnet's metagraph at a block."""
        return await _at_block(request, request.app.state.settings.chain.netuid, block_number)


def chain_error_handler(request: Request, exc: Exception) -> Response[Any]:
    """Chain errors as HTTP: unknown things 404, an unreachable chain 503, a rejected extrinsic 502."""
    http: HTTPException
    if isinstance(exc, UnknownNetuid | BlockNotFound | HotkeyNotFound | CertificateNotFound):
        http = NotFoundException(str(exc))
    elif isinstance(exc, ChainUnavailable | TimeoutError):
        http = ServiceUnavailableException(f"chain unavailable: {exc}")
    elif isinstance(exc, NoWallet):
        http = ServiceUnavailableException(str(exc))
    elif isinstance(exc, ExtrinsicFailed):
        http = HTTPException(str(exc), status_code=HTTP_502_BAD_GATEWAY, extra={"error_name": exc.error_name})
    else:
        http = HTTPException(f"chain error: {exc}", status_code=HTTP_502_BAD_GATEWAY)
    return http_exception_handler(request, http)


neurons_router = Router(
    path="/api/v1",
    route_handlers=[
        SubnetNeuronsController,
        DefaultNetuidNeuronsController,
    ],
    exception_handlers={ChainError: chain_error_handler, TimeoutError: chain_error_handler},
)
