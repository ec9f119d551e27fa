"""bittensor-pylon's API, as its client (`bittensor-pylon-client`, module `pylon_client`) calls it.

Every subnet resource is served on four bases, the v1 and `_unstable` prefixes in open access and identity
form:

    /api/v1/subnet/{netuid}/...                        /api/_unstable/openaccess/subnet/{netuid}/...
    /api/v1/identity/{name}/subnet/{netuid}/...        /api/_unstable/identity/{name}/subnet/{netuid}/...

and chain-level resources on `/api/v1/...` and `/api/_unstable/openaccess/...`. Open access takes any
credential with `neurons:read` (an API key, `PYLON_OPEN_ACCESS_TOKEN`); an identity path takes that
identity's token (`PYLON_ID_<NAME>_TOKEN`), an API key bound to it, or the admin token. As the client
expects: no credential 401, a credential that is not the identity's 403, an unknown identity 404, a netuid
the identity does not work on 308 (the client then looks the netuid up again).

The latest neurons are hot routes on every base, answered from the same cached bytes as
`/api/v1/subnet/{netuid}/neurons/latest`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post, put
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_308_PERMANENT_REDIRECT
from litestar.types import ASGIApp

from app.auth.scopes import Scope
from app.chain.client import (
    BlockExtrinsic,
    Certificate,
    CertificateKeypair,
    ChainError,
    Commitment,
    NotSupported,
    RevealedCommitment,
)
from app.errors import http_exception_handler
from app.http.context import principal_of
from app.http.hot import HotRequest, HotRoute
from app.neurons.controller import (
    _at_block,
    chain_error_handler,
    latest_answer,
    serve_latest,
    stale_age,
)
from app.neurons.controller import service_of as neurons_service_of
from app.neurons.schemas import GenerateCertificateRequest
from app.peer.schemas import (
    BlockInfoResponse,
    CommitmentsUnstable,
    CommitmentsV1,
    CommitmentUnstable,
    CommitmentV1,
    CommitmentVariant,
    DetailResponse,
    DrandRoundResponse,
    EvmAssociationsResponse,
    HexCommitment,
    IdentitiesResponse,
    LoginRequest,
    LoginResponse,
    PriceEntry,
    PriceResponse,
    PricesResponse,
    RevealedCommitments,
    RevealedCommitmentsOfHotkey,
    RevealedCommitmentView,
    RevealRoundResponse,
    SetCommitmentRequest,
    SetRevealedCommitmentRequest,
    TimelockCommitment,
    ValidatorsResponse,
    WeightsStatusResponse,
)
from app.peer.service import NotFound, PeerService, WrongNetuid, identity_netuid
from app.settings import DEFAULT_IDENTITY
from app.weights.controller import _submit
from app.weights.identities import Identity
from app.weights.schemas import SetWeightsRequest, SetWeightsResponse

V1 = "/api/v1"
UNSTABLE = "/api/_unstable"
OPEN_BASES = (f"{V1}/subnet/{{netuid:int}}", f"{UNSTABLE}/openaccess/subnet/{{netuid:int}}")
IDENTITY_BASES = (
    f"{V1}/identity/{{identity_name:str}}/subnet/{{netuid:int}}",
    f"{UNSTABLE}/identity/{{identity_name:str}}/subnet/{{netuid:int}}",
)
CHAIN_BASES = (V1, f"{UNSTABLE}/openaccess")
# An unrecognised credential on an identity path is 403 (not that identity's token), as the client expects.
READ = {"scope": Scope.NEURONS_READ, "identity_param": "identity_name"}
WRITE = {"scope": Scope.WEIGHTS_WRITE, "identity_param": "identity_name"}
# Soft/hard age of bittensor-pylon's "recent" neurons, in seconds of chain silence.
RECENT_HARD_LIMIT = 120.0


def subnet(suffix: str) -> list[str]:
    return [base + suffix for base in (*OPEN_BASES, *IDENTITY_BASES)]


def identity_only(suffix: str) -> list[str]:
    return [base + suffix for base in IDENTITY_BASES]


def chain(suffix: str) -> list[str]:
    return [base + suffix for base in CHAIN_BASES]


def service_of(request: Request) -> PeerService:
    state = request.app.state
    service: PeerService | None = state.get("peer_service")
    if service is None:
        service = PeerService(
            state.metagraph, state.chain, state.weights.identities, state.settings.chain.netuid
        )
        state.peer_service = service
    return service


def may_act_as(principal: Any, name: str) -> bool:
    """The admin token acts as any identity, an identity token as its own, an API key as the identity it
    is bound to (`default` when it is bound to none, as on Pylon's weights routes)."""
    if principal is None:
        return False
    if principal.kind == "admin_token":
        return True
    if principal.kind == "api_key":
        return (principal.identity or DEFAULT_IDENTITY) == name
    return principal.kind == "identity_token" and principal.identity == name


def acting_identity(request: Request, name: str | None, netuid: int) -> Identity | None:
    """The identity of an identity path (None on open paths): 404 unknown, 403 not the caller's, 308 when
    it works on another subnet."""
    if name is None:
        return None
    service = service_of(request)
    service.identity(name)
    if not may_act_as(principal_of(request), name):
        raise PermissionDeniedException(f"this credential is not identity {name!r}'s token")
    return service.identity(name, netuid)


def own_identity(request: Request, name: str | None, netuid: int) -> Identity:
    identity = acting_identity(request, name, netuid)
    assert identity is not None  # identity-only paths always name one
    return identity


# ------------------------------------------------------------------------------------------- answers
def hex_of(data: bytes) -> str:
    return "0x" + data.hex()


def variant(commitment: Commitment) -> CommitmentVariant:
    if commitment.kind == "timelock_encrypted":
        return TimelockCommitment(
            commitment_block_number=commitment.block,
            hotkey=commitment.hotkey,
            commitment=hex_of(commitment.data),
            reveal_round=commitment.reveal_round or 0,
        )
    return HexCommitment(
        commitment_block_number=commitment.block, hotkey=commitment.hotkey, commitment=hex_of(commitment.data)
    )


def revealed_view(revealed: RevealedCommitment) -> RevealedCommitmentView:
    return RevealedCommitmentView(
        reveal_block_number=revealed.reveal_block, hotkey=revealed.hotkey, commitment=revealed.data
    )


def is_v1(request: Request) -> bool:
    return request.scope["path"].startswith(V1 + "/")


async def serve_identity_latest(request: HotRequest) -> int | None:
    """The identity form of the hot latest neurons: the caller must act as the path's identity."""
    name = request.params["identity_name"]
    identities = request.state.weights.identities
    if name not in identities or not may_act_as(request.context.principal, name):
        return None
    if not identities[name].allows_netuid(request.params["netuid"]):
        return None
    return await serve_latest(request)


# -------------------------------------------------------------------------------------------- routes
@get([f"{V1}/identities", f"{UNSTABLE}/identities"], opt={"open": "lists identity names; no secrets"})
async def identities(request: Request) -> IdentitiesResponse:
    """Each identity's name and the subnet it works on: the client reads this before identity calls."""
    return IdentitiesResponse(identities=service_of(request).listed_identities())


@post(f"{V1}/login/identity/{{identity_name:str}}", opt={"open": "bittensor-pylon 1.x login: token in body"})
async def login(
    request: Request, identity_name: FromPath[str], data: JSONBody[LoginRequest]
) -> LoginResponse:
    """bittensor-pylon 1.x's identity login: checks the identity's token and names its subnet."""
    service = service_of(request)
    identity = service.identity(identity_name)
    principal = request.app.state.authenticator.peer_token(data.token)
    if principal is None or principal.identity != identity_name:
        raise PermissionDeniedException("invalid token for this identity")
    return LoginResponse(
        netuid=identity_netuid(identity, service.default_netuid), identity_name=identity_name
    )


@get(chain("/block/latest"), opt=READ)
async def latest_block(request: Request) -> BlockInfoResponse:
    """The head: number, hash and timestamp (unix seconds)."""
    head, timestamp = await service_of(request).block_info()
    return BlockInfoResponse(number=head.number, hash=head.hash, timestamp=timestamp)


@get(chain("/block/{block_number:int}/extrinsic/{extrinsic_index:int}"), opt=READ)
async def extrinsic(
    request: Request, block_number: FromPath[int], extrinsic_index: FromPath[int]
) -> BlockExtrinsic:
    """One extrinsic of a block, decoded; 404 past the block's last."""
    return await service_of(request).extrinsic(block_number, extrinsic_index)


@get([f"{UNSTABLE}/openaccess/block/latest/drand/last_stored_round"], opt=READ)
async def drand_round(request: Request) -> DrandRoundResponse:
    return DrandRoundResponse(last_stored_round=await service_of(request).drand_round())


@get(chain("/block/latest/prices"), opt=READ)
async def latest_prices(request: Request) -> PricesResponse:
    """Every subnet's alpha price (rao of TAO per alpha) at the head."""
    return await _prices(request, None)


@get(chain("/block/{block_number:int}/prices"), opt=READ)
async def prices_at(request: Request, block_number: FromPath[int]) -> PricesResponse:
    return await _prices(request, block_number)


async def _prices(request: Request, number: int | None) -> PricesResponse:
    block, prices = await service_of(request).prices(number)
    return PricesResponse(block=block, prices={n: PriceEntry(value=v) for n, v in prices.items()})


@get(subnet("/block/latest/neurons"), opt=READ)
async def latest_neurons(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> ASGIApp:
    """The subnet's neurons at the latest block (the client's main call; a hot route while cached)."""
    acting_identity(request, identity_name, netuid)
    return await latest_answer(request.app.state, netuid, request.scope["headers"])


@get(subnet("/block/recent/neurons"), opt=READ)
async def recent_neurons(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> ASGIApp:
    """The latest cached neurons; 503 once the chain has been silent longer than the hard limit."""
    acting_identity(request, identity_name, netuid)
    state = request.app.state
    age = stale_age(state.metagraph)
    if age is not None and age > RECENT_HARD_LIMIT:
        raise HTTPException(f"recent neurons are stale: no new block for {age:.0f}s", status_code=503)
    return await latest_answer(state, netuid, request.scope["headers"])


@get(subnet("/block/{block_number:int}/neurons"), opt=READ)
async def neurons_at(
    request: Request,
    netuid: FromPath[int],
    block_number: FromPath[int],
    identity_name: FromPath[str | None] = None,
) -> ASGIApp:
    acting_identity(request, identity_name, netuid)
    return await _at_block(request, netuid, str(block_number))


@get(subnet("/block/latest/validators"), opt=READ)
async def latest_validators(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> ValidatorsResponse:
    """Validator-permit holders at the latest block, highest total stake first."""
    acting_identity(request, identity_name, netuid)
    return await service_of(request).validators(netuid, None)


@get(subnet("/block/{block_number:int}/validators"), opt=READ)
async def validators_at(
    request: Request,
    netuid: FromPath[int],
    block_number: FromPath[int],
    identity_name: FromPath[str | None] = None,
) -> ValidatorsResponse:
    acting_identity(request, identity_name, netuid)
    return await service_of(request).validators(netuid, block_number)


@get(subnet("/block/latest/certificates"), opt=READ)
async def certificates(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> dict[str, Certificate]:
    acting_identity(request, identity_name, netuid)
    return await neurons_service_of(request).certificates(netuid)


@get(identity_only("/block/latest/certificates/self"), opt=READ)
async def own_certificate(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str]
) -> Certificate:
    identity = own_identity(request, identity_name, netuid)
    return await neurons_service_of(request).certificate(netuid, identity.hotkey_ss58)


@get(subnet("/block/latest/certificates/{hotkey:str}"), opt=READ)
async def certificate(
    request: Request, netuid: FromPath[int], hotkey: FromPath[str], identity_name: FromPath[str | None] = None
) -> Certificate:
    acting_identity(request, identity_name, netuid)
    return await neurons_service_of(request).certificate(netuid, hotkey)


@post(identity_only("/certificates/self"), opt=WRITE, status_code=HTTP_201_CREATED)
async def generate_certificate(
    request: Request,
    netuid: FromPath[int],
    identity_name: FromPath[str],
    data: JSONBody[GenerateCertificateRequest],
) -> CertificateKeypair:
    """A new certificate key pair for the identity's hotkey, its public key posted on chain (201)."""
    identity = own_identity(request, identity_name, netuid)
    return await service_of(request).chain.generate_certificate(identity.keypair, netuid, data.algorithm)


# Two handlers, not one answering a union: an empty `commitments` is valid as either body, and a union is
# documented as `oneOf` (exactly one), which that answer would break.
@get([p for p in subnet("/block/latest/commitments") if p.startswith(V1 + "/")], opt=READ)
async def commitments(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> CommitmentsV1:
    """Commitments of the subnet's registered hotkeys: hex data by hotkey (timelocked ones omitted)."""
    acting_identity(request, identity_name, netuid)
    block, found = await service_of(request).commitments(netuid)
    hex_only = {hotkey: hex_of(c.data) for hotkey, c in found.items() if c.kind == "hex_data"}
    return CommitmentsV1(block=block, commitments=hex_only)


@get([p for p in subnet("/block/latest/commitments") if p.startswith(UNSTABLE + "/")], opt=READ)
async def commitments_unstable(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> CommitmentsUnstable:
    """Commitments of the subnet's registered hotkeys, each with its kind (hex data or timelock)."""
    acting_identity(request, identity_name, netuid)
    block, found = await service_of(request).commitments(netuid)
    return CommitmentsUnstable(block=block, commitments={hotkey: variant(c) for hotkey, c in found.items()})


@get(subnet("/block/latest/commitments/revealed"), opt=READ)
async def revealed_commitments(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> RevealedCommitments:
    acting_identity(request, identity_name, netuid)
    block, found = await service_of(request).revealed_commitments(netuid)
    views = {hotkey: [revealed_view(r) for r in items] for hotkey, items in found.items()}
    return RevealedCommitments(block=block, commitments=views)


@get(identity_only("/block/latest/commitments/self"), opt=READ)
async def own_commitment(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str]
) -> CommitmentV1 | CommitmentUnstable:
    identity = own_identity(request, identity_name, netuid)
    return await _commitment(request, netuid, identity.hotkey_ss58)


@get(identity_only("/block/latest/commitments/revealed/self"), opt=READ)
async def own_revealed_commitments(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str]
) -> RevealedCommitmentsOfHotkey:
    identity = own_identity(request, identity_name, netuid)
    return await _revealed_of(request, netuid, identity.hotkey_ss58)


@get(subnet("/block/latest/commitments/revealed/{hotkey:str}"), opt=READ)
async def revealed_commitments_of(
    request: Request, netuid: FromPath[int], hotkey: FromPath[str], identity_name: FromPath[str | None] = None
) -> RevealedCommitmentsOfHotkey:
    acting_identity(request, identity_name, netuid)
    return await _revealed_of(request, netuid, hotkey)


async def _revealed_of(request: Request, netuid: int, hotkey: str) -> RevealedCommitmentsOfHotkey:
    block, found = await service_of(request).revealed_commitments_of(netuid, hotkey)
    return RevealedCommitmentsOfHotkey(commitments=[revealed_view(r) for r in found], block=block)


@get(subnet("/block/latest/commitments/{hotkey:str}"), opt=READ)
async def commitment(
    request: Request, netuid: FromPath[int], hotkey: FromPath[str], identity_name: FromPath[str | None] = None
) -> CommitmentV1 | CommitmentUnstable:
    """One hotkey's commitment; 404 if none (on v1 also for a timelock-encrypted one)."""
    acting_identity(request, identity_name, netuid)
    return await _commitment(request, netuid, hotkey)


async def _commitment(request: Request, netuid: int, hotkey: str) -> CommitmentV1 | CommitmentUnstable:
    block, found = await service_of(request).commitment(netuid, hotkey)
    if not is_v1(request):
        return CommitmentUnstable(commitment=variant(found), block=block)
    if found.kind != "hex_data":
        raise NotFound(f"hotkey {hotkey} has only a timelock-encrypted commitment on subnet {netuid}")
    return CommitmentV1(
        block=block, commitment_block_number=found.block, hotkey=hotkey, commitment=hex_of(found.data)
    )


@post(identity_only("/commitments"), opt=WRITE, status_code=HTTP_201_CREATED)
async def set_commitment(
    request: Request,
    netuid: FromPath[int],
    identity_name: FromPath[str],
    data: JSONBody[SetCommitmentRequest],
) -> DetailResponse:
    """Commit hex data for the identity's hotkey; 201 once it is in a block, 502 if the chain refused it."""
    identity = own_identity(request, identity_name, netuid)
    await service_of(request).set_commitment(
        identity, netuid, bytes.fromhex(data.commitment.removeprefix("0x"))
    )
    return DetailResponse(detail="Commitment set successfully.")


@post(identity_only("/commitments/revealed"), opt=WRITE, status_code=HTTP_201_CREATED)
async def set_revealed_commitment(
    request: Request,
    netuid: FromPath[int],
    identity_name: FromPath[str],
    data: JSONBody[SetRevealedCommitmentRequest],
) -> RevealRoundResponse:
    """Commit data timelock-encrypted until about `blocks_until_reveal` blocks from now."""
    identity = own_identity(request, identity_name, netuid)
    reveal_round = await service_of(request).set_timelocked_commitment(
        identity, netuid, data.commitment, data.blocks_until_reveal
    )
    return RevealRoundResponse(reveal_round=reveal_round)


@get(subnet("/block/latest/price"), opt=READ)
async def latest_price(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> PriceResponse:
    acting_identity(request, identity_name, netuid)
    return await _price(request, netuid, None)


@get(subnet("/block/{block_number:int}/price"), opt=READ)
async def price_at(
    request: Request,
    netuid: FromPath[int],
    block_number: FromPath[int],
    identity_name: FromPath[str | None] = None,
) -> PriceResponse:
    acting_identity(request, identity_name, netuid)
    return await _price(request, netuid, block_number)


async def _price(request: Request, netuid: int, number: int | None) -> PriceResponse:
    block, value = await service_of(request).price(netuid, number)
    return PriceResponse(block=block, netuid=netuid, price=PriceEntry(value=value))


@get(subnet("/block/latest/evm_associations"), opt=READ)
async def evm_associations(
    request: Request, netuid: FromPath[int], identity_name: FromPath[str | None] = None
) -> EvmAssociationsResponse:
    acting_identity(request, identity_name, netuid)
    block, found = await service_of(request).evm_associations(netuid)
    return EvmAssociationsResponse(block=block, evm_associations=found)


def _mechanism(netuid: int, mechanism_id: int) -> None:
    if mechanism_id != 0:
        raise NotFoundException(
            f"subnet {netuid} has one mechanism (0); mechanism {mechanism_id} does not exist"
        )


@put(identity_only("/mechanism/{mechanism_id:int}/weights"), opt=WRITE, status_code=HTTP_202_ACCEPTED)
async def put_mechanism_weights(
    request: Request,
    netuid: FromPath[int],
    identity_name: FromPath[str],
    mechanism_id: FromPath[int],
    data: JSONBody[SetWeightsRequest],
) -> SetWeightsResponse:
    """The `_unstable` weights PUT: mechanism 0 is the subnet's weights (a durable job, as PUT /weights)."""
    own_identity(request, identity_name, netuid)
    _mechanism(netuid, mechanism_id)
    return await _submit(request, identity_name, netuid, data)


@get(identity_only("/mechanism/{mechanism_id:int}/block/{block_number:int}/weights/status"), opt=READ)
async def weights_status(
    request: Request,
    netuid: FromPath[int],
    identity_name: FromPath[str],
    mechanism_id: FromPath[int],
    block_number: FromPath[int],
) -> WeightsStatusResponse:
    """Whether the identity's weights reached the chain in the epoch containing the block."""
    identity = own_identity(request, identity_name, netuid)
    _mechanism(netuid, mechanism_id)
    submitted = await service_of(request).weights_submitted(identity, netuid, block_number)
    return WeightsStatusResponse(weights_submitted=submitted)


def peer_error_handler(request: Request, exc: Exception) -> Response[Any]:
    if isinstance(exc, WrongNetuid):
        path = request.scope["path"].replace(
            f"/subnet/{request.path_params['netuid']}/", f"/subnet/{exc.expected}/", 1
        )
        return http_exception_handler(
            request,
            HTTPException(str(exc), status_code=HTTP_308_PERMANENT_REDIRECT, headers={"Location": path}),
        )
    if isinstance(exc, NotFound):
        return http_exception_handler(request, NotFoundException(str(exc)))
    if isinstance(exc, NotSupported):
        detail = f"not served by this chain: {exc}"
        return http_exception_handler(request, HTTPException(detail, status_code=501))
    return chain_error_handler(request, exc)


HOT_ROUTES = tuple(
    HotRoute(
        "GET",
        path,
        Scope.NEURONS_READ,
        serve_latest if "{identity_name" not in path else serve_identity_latest,
    )
    for path in subnet("/block/latest/neurons")
)

peer_router = Router(
    path="",
    tags=["bittensor-pylon"],
    route_handlers=[
        identities,
        login,
        latest_block,
        extrinsic,
        drand_round,
        latest_prices,
        prices_at,
        latest_neurons,
        recent_neurons,
        neurons_at,
        latest_validators,
        validators_at,
        certificates,
        own_certificate,
        certificate,
        generate_certificate,
        commitments,
        commitments_unstable,
        revealed_commitments,
        own_commitment,
        own_revealed_commitments,
        revealed_commitments_of,
        commitment,
        set_commitment,
        set_revealed_commitment,
        latest_price,
        price_at,
        evm_associations,
        put_mechanism_weights,
        weights_status,
    ],
    exception_handlers={ChainError: peer_error_handler, TimeoutError: chain_error_handler},
)
