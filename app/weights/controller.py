"""Weights routes: PUT weights (a durable job, 202), read jobs back, and what was last set.

Which identity a request acts as:
- no caller (auth not configured) or the admin token: the identity in the path, `default` otherwise;
- an API key bound to an identity: that identity only. The routes without an identity in the path act as
  the key's identity, so bittensor-pylon's client (which knows no identities) works with a bound key;
- an API key with no identity: the `default` identity only.
A key may also be limited to some netuids; an identity may be limited by `PYLON_IDENTITY_<NAME>_NETUIDS`.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from litestar import Controller, Request, get, put
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_422_UNPROCESSABLE_ENTITY

from app.auth.context import Principal
from app.auth.scopes import Scope
from app.chain.client import UnknownNetuid
from app.http.context import principal_of
from app.http.inputs import NetuidPath, NetuidQuery, StoredIdPath
from app.settings import DEFAULT_IDENTITY
from app.weights.schemas import (
    JobStatus,
    LastWeights,
    SetWeightsRequest,
    SetWeightsResponse,
    WeightsJobList,
    WeightsJobView,
    WeightsValidationError,
)
from app.weights.service import JobNotFound, WeightsService

log = structlog.get_logger(__name__)
MAX_LIST_LIMIT = 500


class UnprocessableWeights(HTTPException):
    status_code = HTTP_422_UNPROCESSABLE_ENTITY


# Documented beside what app/http/openapi.py adds: no hotkey on the subnet (422), no such subnet (404).
WEIGHTS_ERRORS = [UnprocessableWeights, NotFoundException]


def _unrestricted(principal: Principal | None) -> bool:
    return principal is None or principal.kind == "admin_token"


def identity_for(principal: Principal | None, requested: str | None, netuid: int | None) -> str:
    """The identity this caller acts as, or 403. `requested` None means the route named no identity."""
    if _unrestricted(principal):
        return requested or DEFAULT_IDENTITY
    assert principal is not None
    bound = principal.identity or DEFAULT_IDENTITY
    if requested is not None and requested != bound:
        raise PermissionDeniedException(
            f"this API key is bound to identity {bound!r} and cannot act as identity {requested!r}"
        )
    if netuid is not None and not principal.allows_netuid(netuid):
        raise PermissionDeniedException(f"this API key may not use subnet {netuid}")
    return bound


def visible_identities(principal: Principal | None) -> list[str] | None:
    """Identities whose jobs the caller may read; None means all."""
    if _unrestricted(principal):
        return None
    assert principal is not None
    return [principal.identity or DEFAULT_IDENTITY]


def _service(request: Request) -> WeightsService:
    service: WeightsService = request.app.state.weights
    return service


async def _submit(
    request: Request, identity: str | None, netuid: int, data: JSONBody[SetWeightsRequest]
) -> SetWeightsResponse:
    service = _service(request)
    name = identity_for(principal_of(request), identity, netuid)
    try:
        resolved = service.identity(name)
    except JobNotFound:
        if name == DEFAULT_IDENTITY:
            raise NotFoundException(
                "no default identity: set PYLON_WALLET_NAME (and PYLON_WALLET_HOTKEY, PYLON_WALLET_PATH)"
            ) from None
        raise NotFoundException(f"unknown identity {name!r}: it is not listed in PYLON_IDENTITIES") from None
    if not resolved.allows_netuid(netuid):
        raise PermissionDeniedException(
            f"identity {name!r} may not set weights on subnet {netuid} "
            f"(PYLON_IDENTITY_{name.upper()}_NETUIDS)"
        )
    try:
        return await service.submit(name, netuid, data.weights)
    except WeightsValidationError as exc:
        raise UnprocessableWeights(detail=str(exc), extra=exc.extra or None) from None
    except UnknownNetuid:
        raise NotFoundException(f"subnet {netuid} does not exist") from None


class WeightsController(Controller):
    tags = ["weights"]

    @put(
        "/api/v1/subnet/weights",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": Scope.WEIGHTS_WRITE},
        raises=WEIGHTS_ERRORS,
    )
    async def put_weights_default_netuid(
        self, request: Request, data: JSONBody[SetWeightsRequest]
    ) -> SetWeightsResponse:
        """Schedule weights on the default subnet (`PYLON_NETUID`), as bittensor-pylon's client calls it.

        Answers 202 with the job; the worker applies it (set or commit-reveal, retried until the epoch ends).
        """
        netuid = request.app.state.settings.chain.netuid
        return await _submit(request, None, netuid, data)

    @put(
        "/api/v1/subnet/{netuid:int}/weights",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": Scope.WEIGHTS_WRITE},
        raises=WEIGHTS_ERRORS,
    )
    async def put_weights(
        self, request: Request, netuid: NetuidPath, data: JSONBody[SetWeightsRequest]
    ) -> SetWeightsResponse:
        """Schedule weights `{hotkey: weight}` on a subnet for the default identity (or the key's identity).

        Hotkeys not on the subnet are accepted and listed in `skipped_hotkeys`. A newer PUT for the same
        identity and subnet supersedes this one while it has not landed.
        """
        return await _submit(request, None, netuid, data)

    @put(
        "/api/v1/identity/{identity:str}/subnet/{netuid:int}/weights",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": Scope.WEIGHTS_WRITE},
        raises=WEIGHTS_ERRORS,
    )
    async def put_identity_weights(
        self,
        request: Request,
        identity: FromPath[str],
        netuid: NetuidPath,
        data: JSONBody[SetWeightsRequest],
    ) -> SetWeightsResponse:
        """Schedule weights signed by a named identity's hotkey (`PYLON_IDENTITIES`)."""
        return await _submit(request, identity, netuid, data)

    @get("/api/v1/weights/jobs/{job_id:int}", opt={"scope": Scope.WEIGHTS_READ})
    async def get_job(self, request: Request, job_id: StoredIdPath) -> WeightsJobView:
        """One weights job: its status, attempts, last error, blocks, extrinsic hash and weights."""
        principal = principal_of(request)
        try:
            job = await _service(request).get_job(job_id)
        except JobNotFound as exc:
            raise NotFoundException(str(exc)) from None
        allowed = visible_identities(principal)
        if (allowed is not None and job.identity not in allowed) or (
            principal is not None and not principal.allows_netuid(job.netuid)
        ):
            raise NotFoundException(f"no weights job {job_id}")
        return job

    @get("/api/v1/weights/jobs", opt={"scope": Scope.WEIGHTS_READ})
    async def list_jobs(
        self,
        request: Request,
        netuid: NetuidQuery = None,
        identity: FromQuery[str | None] = None,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIST_LIMIT)] = 50,
    ) -> WeightsJobList:
        """Weights jobs, newest first, filtered by subnet, identity and status."""
        principal = principal_of(request)
        allowed = visible_identities(principal)
        identities = allowed
        if identity is not None:
            if allowed is not None and identity not in allowed:
                raise PermissionDeniedException(f"this API key cannot read jobs of identity {identity!r}")
            identities = [identity]
        if principal is not None and netuid is not None and not principal.allows_netuid(netuid):
            raise PermissionDeniedException(f"this API key may not use subnet {netuid}")
        found = await _service(request).list_jobs(
            netuid=netuid, identities=identities, status=status, limit=limit
        )
        if principal is not None and principal.netuids is not None:
            found = [job for job in found if principal.allows_netuid(job.netuid)]
        return WeightsJobList(jobs=found)

    @get("/api/v1/subnet/{netuid:int}/weights/last", opt={"scope": Scope.WEIGHTS_READ})
    async def last_weights(
        self, request: Request, netuid: NetuidPath, identity: FromQuery[str | None] = None
    ) -> LastWeights:
        """What the identity (default: the caller's) last set or committed here, and at which block."""
        name = identity_for(principal_of(request), identity, netuid)
        try:
            return await _service(request).last(name, netuid)
        except JobNotFound as exc:
            raise NotFoundException(str(exc)) from None
