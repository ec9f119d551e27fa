"""Neurons routes: the metagraph (latest and at a block), one hotkey, hyperparameters and certificates.

The latest metagraph is served as bytes encoded once per block by the metagraph cache: a request does a
dict lookup and, with `If-None-Match`, may get a 304 (app/neurons/render.py). Its two routes are also hot
routes (`HOT_ROUTES`, answered before Litestar's router while the cache is warm) with the same answer.
"""

from __future__ import annotations

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
from litestar.types import ASGIApp
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
from app.chain.metagraph import MetagraphCache
from app.errors import http_exception_handler
from app.http.hot import HotRequest, HotRoute
from app.http.inputs import NetuidPath
from app.http.raw import RawResponse
from app.inputs import U32_MAX
from app.neurons.render import metagraph_answer
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


def parse_block_number(raw: str) -> int:
    # ASCII digits only: `isdigit()` alone takes superscript digits, which `int()` then refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > U32_MAX:
        raise ValidationException(
            f"block number must be an integer from 0 to {U32_MAX} in ASCII digits, got {raw!r}",
            extra=[{"message": "expected a block number", "key": "block_number", "source": "path"}],
        )
    return int(raw)


def stale_age(cache: MetagraphCache) -> float | None:
    """Seconds since the last chain head while the cache is stale; None while it is fresh."""
    return (cache.head_age() or 0.0) if cache.is_stale() else None


async def latest_answer(state: Any, netuid: int, request_headers: Any) -> RawResponse:
    """The latest metagraph from the cache, waiting for the chain only while the cache is cold."""
    cache: MetagraphCache = state.metagraph
    cached = cache.peek(netuid)
    if cached is None:
        cached = await cache.latest(netuid)
    else:
        cache.count_hit()
    return metagraph_answer(cached, request_headers, stale_age(cache))


async def serve_latest(request: HotRequest) -> int | None:
    """The hot route: served from a warm cache, else left to the routed handler (which waits for it)."""
    state = request.state
    netuid = request.params.get("netuid", state.settings.chain.netuid)
    if state.metagraph.peek(netuid) is None:
        return None
    answer = await latest_answer(state, netuid, request.scope["headers"])
    return await answer.respond(request.receive, request.send, (request.context.request_id_header,))


METAGRAPH_RESPONSES = {
    200: ResponseSpec(
        data_container=Metagraph, description="The metagraph, keyed by hotkey (bittensor-pylon's shape)."
    )
}


async def _at_block(request: Request, netuid: int, block_number: str) -> RawResponse:
    cached = await service_of(request).at_block(netuid, parse_block_number(block_number))
    return metagraph_answer(cached, request.scope["headers"])


class SubnetNeuronsController(Controller):
    path = "/subnet/{netuid:int}"
    tags = ["neurons"]

    @get("/neurons/latest", opt=READ, responses=METAGRAPH_RESPONSES)
    async def latest_neurons(self, scope: ASGIScope, netuid: NetuidPath) -> ASGIApp:
        """The subnet's metagraph at the latest block: `{"block": {...}, "neurons": {hotkey: neuron}}`.

        Served from memory (refreshed once per block); honours `If-None-Match`. `X-Pylon-Block` names
        the block; while the chain is unreachable the last metagraph is served with `Age` and
        `X-Pylon-Stale: true`.
        """
        return await latest_answer(scope["litestar_app"].state, netuid, scope["headers"])

    @get("/neurons/{block_number:str}", opt=READ)
    async def neurons_at_block(
        self, request: Request, netuid: NetuidPath, block_number: FromPath[str]
    ) -> ASGIApp:
        """The subnet's metagraph at a block. 404 for a block in the future or no longer kept by the node."""
        return await _at_block(request, netuid, block_number)

    @get("/neurons/latest/{hotkey:str}", opt=READ)
    async def latest_neuron(
        self, request: Request, netuid: NetuidPath, hotkey: FromPath[str]
    ) -> NeuronResponse:
        """One neuron, by hotkey, at the latest block; 404 if the hotkey is not registered."""
        return await service_of(request).neuron(netuid, hotkey)

    @get("/hyperparams", opt=READ)
    async def hyperparams(self, request: Request, netuid: NetuidPath) -> HyperparamsResponse:
        """The subnet's hyperparameters at the latest block (tempo, weights rate limit, commit-reveal...)."""
        return await service_of(request).hyperparams(netuid)

    @get("/certificates", opt=READ)
    async def certificates(self, request: Request, netuid: NetuidPath) -> dict[str, Certificate]:
        """Every neuron certificate posted on the subnet, keyed by hotkey."""
        return await service_of(request).certificates(netuid)

    @get("/certificates/self", opt=READ)
    async def own_certificate(self, request: Request, netuid: NetuidPath) -> Certificate:
        """The certificate of Pylon's own wallet hotkey; 404 if it has none."""
        return await service_of(request).own_certificate(netuid)

    @post("/certificates/self", opt={"scope": Scope.WEIGHTS_WRITE}, status_code=HTTP_201_CREATED)
    async def generate_certificate(
        self, request: Request, netuid: NetuidPath, data: JSONBody[GenerateCertificateRequest]
    ) -> CertificateKeypair:
        """Generate a certificate key pair for Pylon's wallet and post its public key on chain.

        The private key is in this answer only; Pylon does not keep it.
        """
        return await service_of(request).generate_certificate(netuid, data.algorithm)

    @get("/certificates/{hotkey:str}", opt=READ)
    async def certificate(self, request: Request, netuid: NetuidPath, hotkey: FromPath[str]) -> Certificate:
        """One hotkey's certificate; 404 if it has none."""
        return await service_of(request).certificate(netuid, hotkey)


class DefaultNetuidNeuronsController(Controller):
    """bittensor-pylon's older short forms, for the subnet in `PYLON_NETUID`."""

    path = "/neurons"
    tags = ["neurons"]

    @get("/latest", opt=READ, responses=METAGRAPH_RESPONSES)
    async def latest_neurons(self, scope: ASGIScope) -> ASGIApp:
        """The `PYLON_NETUID` subnet's metagraph at the latest block."""
        state = scope["litestar_app"].state
        return await latest_answer(state, state.settings.chain.netuid, scope["headers"])

    @get("/{block_number:str}", opt=READ)
    async def neurons_at_block(self, request: Request, block_number: FromPath[str]) -> ASGIApp:
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


HOT_ROUTES = (
    HotRoute("GET", "/api/v1/subnet/{netuid:int}/neurons/latest", Scope.NEURONS_READ, serve_latest),
    HotRoute("GET", "/api/v1/neurons/latest", Scope.NEURONS_READ, serve_latest),
)

neurons_router = Router(
    path="/api/v1",
    route_handlers=[
        SubnetNeuronsController,
        DefaultNetuidNeuronsController,
    ],
    exception_handlers={ChainError: chain_error_handler, TimeoutError: chain_error_handler},
)
