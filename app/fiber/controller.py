"""Fiber's miner endpoints: `GET /public-encryption-key`, `POST /exchange-symmetric-key` (MLTS handshake,
`fiber/encrypted/miner/endpoints/handshake.py`) and `GET /availability` (the seed's miners). Encrypted
calls themselves are opened at the edge (app/fiber/envelope.py) and routed as any request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, Router, get, post
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.params import JSONBody

from app.auth.scopes import Scope
from app.fiber import wire
from app.fiber.schemas import Availability, ExchangeResponse, PublicKeyResponse, SymmetricKeyExchange
from app.fiber.service import FiberError, FiberService
from app.fiber.verify import FiberVerifier
from app.http.context import principal_of

PUBLIC_KEY_OPEN = "Fiber's handshake starts here: the miner's RSA public key and hotkey, nothing secret"
AVAILABILITY_OPEN = "validators poll it before sending work; it says only whether backends take work now"


def _service(request: Request[Any, Any, Any]) -> FiberService:
    service: FiberService = request.app.state.fiber
    return service


@get(
    wire.PUBLIC_KEY_PATH,
    opt={"open": PUBLIC_KEY_OPEN},
    tags=["fiber"],
    summary="Fiber MLTS public key",
    sync_to_thread=False,
)
def public_encryption_key(request: Request[Any, Any, Any]) -> PublicKeyResponse:
    """This miner's RSA public key (PEM), its hotkey and the time, as Fiber's miners answer
    (503 while Pylon has no miner hotkey)."""
    return _service(request).public_key()


@post(
    wire.EXCHANGE_PATH,
    opt={"scope": Scope.INFERENCE, "fiber": True},
    status_code=200,
    tags=["fiber"],
    summary="Fiber MLTS key exchange",
    sync_to_thread=False,
)
def exchange_symmetric_key(
    request: Request[Any, Any, Any], data: JSONBody[SymmetricKeyExchange]
) -> ExchangeResponse:
    """Keep a validator's symmetric key: a request signed with Fiber's MLTS headers (`validator-hotkey`,
    `miner-hotkey`, `nonce`, `signature` over `nonce:miner_hotkey:uuid`, `symmetric-key-uuid`), the body
    `{"encrypted_symmetric_key": base64 of RSA-OAEP(SHA-256) of 32 random bytes}`. Later calls whose body is
    a Fernet token under that key, with the same headers, are opened and routed as any request."""
    principal = principal_of(request)
    if principal is None or principal.kind != "fiber":
        raise PermissionDeniedException("the key exchange is signed by a validator with Fiber's headers")
    key_uuid = request.headers.get(wire.H_KEY_UUID)
    if not key_uuid:
        raise ValidationException(f"the {wire.H_KEY_UUID} header is required")
    return _service(request).exchange(principal.id, key_uuid, data.encrypted_symmetric_key)


@get(
    "/availability",
    opt={"open": AVAILABILITY_OPEN},
    tags=["fiber"],
    summary="Whether this miner takes work now",
    sync_to_thread=False,
)
def availability(request: Request[Any, Any, Any]) -> Availability:
    """`{"available": true}` while some inference backend is healthy and under its in-flight cap,
    otherwise `{"available": false, "reason": ...}`; 200 either way (the miner is reachable)."""
    reason = request.app.state.inference.router.availability()
    return Availability(available=reason is None, reason=reason)


def fiber_error_handler(_request: Request[Any, Any, Any], exc: FiberError) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": exc.status_code, "detail": exc.detail, "extra": exc.extra},
        status_code=exc.status_code,
    )


fiber_router = Router(
    path="/",
    route_handlers=[public_encryption_key, exchange_symmetric_key, availability],
    exception_handlers={FiberError: fiber_error_handler},
)


@asynccontextmanager
async def fiber_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The worker's FiberService on `app.state.fiber`, its verifier sharing Epistula's hotkey and rules."""
    settings = app.state.settings
    verifier = FiberVerifier(settings.fiber, app.state.keys_runtime.epistula)
    app.state.fiber = FiberService(settings, verifier)
    yield
