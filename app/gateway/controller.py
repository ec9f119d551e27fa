"""Gateway routes: a subnet's miner records, and its scores turned into a weights job.

`gateway_lifespan` builds the worker's `GatewayRuntime` (app/gateway/service.py) on `app.state.gateway`;
it must come after the chain and weights hooks (it reads the metagraph and submits weights jobs) and
before the inference hook (which builds the subnet backends through it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Controller, Litestar, Request, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.scopes import Scope
from app.chain.client import UnknownNetuid
from app.gateway.schemas import FromScoresRequest, FromScoresResponse, MinerList
from app.gateway.service import GatewayRuntime, NoScores
from app.http.context import principal_of
from app.http.inputs import NetuidPath
from app.weights.controller import identity_for
from app.weights.identities import load_identities
from app.weights.schemas import WeightsValidationError
from app.weights.service import JobNotFound


class Conflict(HTTPException):
    status_code = HTTP_409_CONFLICT


class Unprocessable(HTTPException):
    status_code = HTTP_422_UNPROCESSABLE_ENTITY


def _gateway(request: Request) -> GatewayRuntime:
    gateway: GatewayRuntime = request.app.state.gateway
    return gateway


class GatewayController(Controller):
    tags = ["gateway"]

    @get("/api/v1/subnet/{netuid:int}/miners", opt={"scope": Scope.NEURONS_READ})
    async def miners(self, request: Request, netuid: NetuidPath) -> MinerList:
        """The gateway's records of a subnet's miners, best score first: requests, successes, failures,
        score and latency moving averages, last answer; `routable` lists the miners it would call now."""
        return await _gateway(request).miners(netuid)

    @post(
        "/api/v1/subnet/{netuid:int}/weights/from-scores",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": Scope.WEIGHTS_WRITE},
        raises=[Conflict, Unprocessable],
    )
    async def weights_from_scores(
        self, request: Request, netuid: NetuidPath, data: JSONBody[FromScoresRequest | None] = None
    ) -> FromScoresResponse:
        """Turn the miners' current scores into a weights job (weight = score) through the weights service.

        Signed by the subnet backend's identity unless `identity` names another; the job's status is
        `GET /api/v1/weights/jobs/{job_id}`. 409 while no miner has a score.
        """
        gateway = _gateway(request)
        body = data or FromScoresRequest()
        principal = principal_of(request)
        unrestricted = principal is None or principal.kind == "admin_token"
        requested = body.identity or (gateway.identity_for(netuid) if unrestricted else None)
        name = identity_for(principal, requested, netuid)
        if name not in gateway.identities:
            raise NotFoundException(f"unknown identity {name!r}: it has no wallet here")
        if not gateway.identities[name].allows_netuid(netuid):
            raise PermissionDeniedException(f"identity {name!r} may not set weights on subnet {netuid}")
        if body.min_requests < 0:
            raise Unprocessable(detail="min_requests must be 0 or more", extra={"field": "min_requests"})
        try:
            return await gateway.weights_from_scores(netuid, name, body.min_requests)
        except NoScores as exc:
            raise Conflict(detail=str(exc)) from None
        except WeightsValidationError as exc:
            raise Unprocessable(detail=str(exc), extra=exc.extra or None) from None
        except JobNotFound as exc:
            raise NotFoundException(str(exc)) from None
        except UnknownNetuid:
            raise NotFoundException(f"subnet {netuid} does not exist") from None


def gateway_lifespan(engine: AsyncEngine) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The worker's gateway on `app.state.gateway`; its records flush loop runs while the app does."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings = app.state.settings
        weights = app.state.get("weights")
        identities = weights.identities if weights is not None else load_identities(settings)
        gateway = GatewayRuntime(settings, engine, app.state.metagraph, identities, weights)
        await gateway.start()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.close()

    return lifespan
