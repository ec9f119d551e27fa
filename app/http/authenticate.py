"""Authentication: one check for every request, routed or hot.

A route declares `opt={"scope": Scope.X}` or `opt={"open": "why"}`; a route that declares neither is
refused, so a new route cannot ship unguarded. Credentials, in order:
- `Authorization: Bearer <credential>` (or `X-API-Key: <credential>`): `PYLON_ADMIN_TOKEN` (every scope),
  `PYLON_METRICS_TOKEN` on routes with `opt["metrics_token"]`, an API key `pylon_<id>_<secret>`, or
  bittensor-pylon's tokens: `PYLON_OPEN_ACCESS_TOKEN` (`neurons:read`) and an identity's
  `PYLON_ID_<NAME>_TOKEN` (that identity, as a key bound to it);
- Epistula v2 headers, only on routes with `opt["epistula"]` (the signer gets the `inference` and
  `upstream` scopes; `opt["epistula_validator_permit"]` and `opt["epistula_min_stake"]` ask more of the
  signer than the PYLON_EPISTULA_* settings do, on that route only).
- Fiber's signed headers (`validator-hotkey`, `signature`, ...: app/fiber/), only on routes with
  `opt["fiber"]` (the validator gets the `inference` scope too).
No or bad credentials: 401. A valid credential without the route's scope: 403 naming it. A key whose
requests- or tokens-per-minute budget is spent: 429 with Retry-After.

`Authenticator.check` answers from memory: a `Principal`, a `Refusal`, or `Pending` when the answer needs
I/O (a key not in this worker's cache, an Epistula signature over the body); `complete` then finishes it.
Nothing here knows Litestar: the caller renders a Refusal (app/http/admission.py) and the hot routes
(app/http/edge.py) hand anything but a Principal to the routed path.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar

from app.auth.context import Principal
from app.auth.epistula import H_SIGNATURE, H_VERSION, EpistulaVerifier, HotkeyDirectory
from app.auth.refusal import WWW_AUTHENTICATE, Refusal, Refused
from app.auth.scopes import Scope
from app.fiber.verify import FiberVerifier
from app.fiber.wire import B_SIGNATURE as FIBER_SIGNATURE
from app.fiber.wire import B_VALIDATOR as FIBER_VALIDATOR
from app.keys.cache import NOT_CACHED, KeyCache
from app.keys.ratelimit import RateLimiter
from app.keys.tokens import CachedKey, parse_key
from app.settings import AuthSettings, IdentitySettings

ALL_SCOPES = frozenset(str(scope) for scope in Scope)
EPISTULA_SCOPES = frozenset({str(Scope.INFERENCE), str(Scope.UPSTREAM)})
ADMIN = Principal(kind="admin_token", id="admin", scopes=ALL_SCOPES)
METRICS = Principal(kind="metrics_token", id="metrics", scopes=frozenset({str(Scope.METRICS_READ)}))
OPEN_ACCESS = Principal(kind="open_access", id="open_access", scopes=frozenset({str(Scope.NEURONS_READ)}))
IDENTITY_SCOPES = frozenset(str(s) for s in (Scope.NEURONS_READ, Scope.WEIGHTS_WRITE, Scope.WEIGHTS_READ))

Headers = Iterable[tuple[bytes, bytes]]
# A request carrying either of these (ASGI header names are lowercase) means to sign with Epistula.
EPISTULA_MARKERS = frozenset({H_SIGNATURE.encode(), H_VERSION.encode()})


class Requirement(msgspec.Struct, frozen=True, kw_only=True):
    """What a route asks of its caller, read from its `opt`."""

    # None: the route declared no scope and is refused.
    scope: str | None
    epistula: bool = False
    fiber: bool = False
    metrics_token: bool = False
    # The route's own signer requirements, on top of the verifier's (PYLON_EPISTULA_*).
    validator_permit: bool = False
    min_stake: float = 0.0

    @classmethod
    def of(cls, opt: Mapping[str, Any]) -> Requirement | None:
        """The route's requirement; None for an open route."""
        if "open" in opt:
            return None
        scope = opt.get("scope")
        return cls(
            scope=None if scope is None else str(scope),
            epistula=bool(opt.get("epistula")),
            fiber=bool(opt.get("fiber")),
            metrics_token=bool(opt.get("metrics_token")),
            validator_permit=bool(opt.get("epistula_validator_permit")),
            min_stake=float(opt.get("epistula_min_stake", 0.0)),
        )


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A check that needs I/O: a key to load from the database, or a signature over the body."""

    requirement: Requirement
    key_id: str | None = None
    secret: str = ""
    # A Fiber signature to verify (else Epistula's, when key_id is None).
    fiber: bool = False


def _refusal(status: int, reason: str, detail: str, **kwargs: Any) -> Refusal:
    return Refusal(status_code=status, detail=detail, reason=reason, **kwargs)


def _unauthorized(reason: str, detail: str) -> Refusal:
    return _refusal(401, reason, detail, headers=WWW_AUTHENTICATE)


def _matches(token: str, expected: str) -> bool:
    return bool(expected) and secrets.compare_digest(token.encode(), expected.encode())


def _fiber_signed(headers: Headers) -> bool:
    """Fiber's `validator-hotkey` and `signature` are both there."""
    found = 0
    for name, _ in headers:
        if name in (FIBER_VALIDATOR, FIBER_SIGNATURE):
            found += 1
    return found >= 2


def _credential(headers: Headers) -> str | Refusal | None:
    """The bearer token or `X-API-Key`; None when there is none."""
    api_key: str | None = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return _unauthorized("malformed", "the Authorization header must be 'Bearer <key>'")
            # An empty bearer ("Bearer ", which clients send when their token variable is unset) is no
            # credential at all: the route answers as it does to a caller who sent nothing.
            return token.strip() or None
        if name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    return api_key or None


class Authenticator:
    """The worker's authentication: tokens from settings, API keys from the key cache, Epistula signers."""

    def __init__(
        self,
        settings: AuthSettings,
        cache: KeyCache,
        limiter: RateLimiter,
        epistula: EpistulaVerifier,
        directory: HotkeyDirectory,
        identities: Iterable[IdentitySettings] = (),
        fiber: FiberVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.limiter = limiter
        self.epistula = epistula
        self.directory = directory
        self.fiber = fiber
        # bittensor-pylon's identity tokens: each acts as its identity, like an API key bound to it.
        self.identity_tokens = [
            (
                identity.token,
                Principal(
                    kind="identity_token",
                    id=identity.name,
                    scopes=IDENTITY_SCOPES,
                    identity=identity.name,
                    netuids=None if identity.netuids is None else frozenset(identity.netuids),
                ),
            )
            for identity in identities
            if identity.token
        ]

    def check(self, headers: Headers, requirement: Requirement) -> Principal | Refusal | Pending:
        """Authenticate and authorise from memory; `Pending` when it needs `complete`."""
        if requirement.scope is None:
            return _refusal(403, "no_scope", "this route declares no scope and is refused")
        if requirement.metrics_token and not self.settings.metrics_token:
            refused = self._metrics_disabled(headers)
            if refused is not None:
                return refused
        token = _credential(headers)
        if isinstance(token, Refusal):
            return token
        if token is not None:
            if _matches(token, self.settings.admin_token):
                return self._authorize(ADMIN, requirement)
            if requirement.metrics_token and _matches(token, self.settings.metrics_token):
                return self._authorize(METRICS, requirement)
            parsed = parse_key(token)
            if parsed is None:
                peer = self.peer_token(token)
                if peer is not None:
                    return self._authorize(peer, requirement)
                return _unauthorized(
                    "malformed", "invalid credential: expected an API key 'pylon_<id>_<secret>'"
                )
            cached = self.cache.lookup(parsed[0])
            if cached is NOT_CACHED:
                return Pending(requirement=requirement, key_id=parsed[0], secret=parsed[1])
            return self._admit_key(cached, parsed[0], parsed[1], requirement)  # type: ignore[arg-type]
        if requirement.epistula and any(name in EPISTULA_MARKERS for name, _ in headers):
            return Pending(requirement=requirement)
        if requirement.fiber and self.fiber is not None and _fiber_signed(headers):
            return Pending(requirement=requirement, fiber=True)
        accepted = "an API key (Authorization: Bearer pylon_...)"
        if requirement.epistula:
            accepted += " or an Epistula v2 signature"
        if requirement.fiber and self.fiber is not None:
            accepted += " or a Fiber signature"
        return _unauthorized("missing", f"authentication required: send {accepted}")

    async def complete(
        self, pending: Pending, headers: Headers, body: Callable[[], Awaitable[bytes]]
    ) -> Principal | Refusal:
        """Finish a pending check: load the key, or verify the Epistula signature over `body()`."""
        if pending.key_id is not None:
            cached = await self.cache.get(pending.key_id)
            return self._admit_key(cached, pending.key_id, pending.secret, pending.requirement)
        named = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        try:
            if pending.fiber and self.fiber is not None:
                caller = await self.fiber.verify(named, body, self.directory)
                principal = Principal(kind="fiber", id=caller.hotkey, scopes=EPISTULA_SCOPES)
            else:
                hotkey = await self.epistula.verify(named, await body(), self.directory)
                principal = Principal(kind="epistula", id=hotkey, scopes=EPISTULA_SCOPES)
        except Refused as refused:
            return refused.refusal
        requirement = pending.requirement
        if requirement.validator_permit or requirement.min_stake > 0:
            refused_signer = await self._route_signer_refusal(principal.id, requirement)
            if refused_signer is not None:
                return refused_signer
        return self._authorize(principal, requirement)

    async def _route_signer_refusal(self, hotkey: str, requirement: Requirement) -> Refusal | None:
        """The route's own permit and stake requirements (the verifier checked registration)."""
        netuid = self.epistula.netuid
        info = await self.directory.lookup(netuid, hotkey)
        if info is None or (requirement.validator_permit and not info.validator_permit):
            return _refusal(403, "epistula", f"hotkey {hotkey} has no validator permit on netuid {netuid}")
        if info.stake < requirement.min_stake:
            return _refusal(
                403,
                "epistula",
                f"hotkey {hotkey} stakes {info.stake:g}, "
                f"below this route's minimum of {requirement.min_stake:g}",
            )
        return None

    def peer_token(self, token: str) -> Principal | None:
        """The principal of a bittensor-pylon token; every configured token is compared (constant time)."""
        found = OPEN_ACCESS if _matches(token, self.settings.open_access_token) else None
        for expected, principal in self.identity_tokens:
            if _matches(token, expected):
                found = principal
        return found

    def _admit_key(
        self, cached: CachedKey | None, key_id: str, secret: str, requirement: Requirement
    ) -> Principal | Refusal:
        if cached is None or not cached.matches(secret):
            return _unauthorized("unknown_key", "invalid API key")
        if cached.revoked:
            return _unauthorized("revoked", f"API key {key_id} has been revoked")
        if cached.expires_at is not None and cached.expires_at <= time.time():
            return _unauthorized("expired", f"API key {key_id} has expired")
        admitted = self._authorize(cached.principal, requirement)
        if isinstance(admitted, Refusal) or (cached.rpm is None and cached.tpm is None):
            return admitted
        limited = self.limiter.acquire(cached.id, cached.rpm, cached.tpm)
        if limited is None:
            return admitted
        which, retry_after = limited
        budget = cached.rpm if which == "rpm" else cached.tpm
        return _refusal(
            429,
            which,
            f"rate limit exceeded: {budget} {'requests' if which == 'rpm' else 'tokens'} per minute",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": which, "retry_after": retry_after},
            principal=cached.principal,
        )

    @staticmethod
    def _authorize(principal: Principal, requirement: Requirement) -> Principal | Refusal:
        required = requirement.scope
        if required is None or required not in principal.scopes:
            return _refusal(
                403,
                "scope",
                f"missing scope '{required}'",
                extra={"missing_scope": str(required), "principal": principal.id},
                principal=principal,
            )
        return principal

    def _metrics_disabled(self, headers: Headers) -> Refusal | None:
        """bittensor-pylon's contract: /metrics is closed (403) while PYLON_METRICS_TOKEN is unset; only an
        API key (with `metrics:read`) or the admin token still opens it."""
        token = ""
        for name, value in headers:
            if name == b"authorization":
                token = value.decode("latin-1").partition(" ")[2].strip()
                break
            if name == b"x-api-key" and not token:
                token = value.decode("latin-1")
        if parse_key(token) is None and not _matches(token, self.settings.admin_token):
            return _refusal(
                403,
                "metrics_disabled",
                "metrics are disabled: set PYLON_METRICS_TOKEN, "
                "or call with an API key that has 'metrics:read'",
            )
        return None


@asynccontextmanager
async def authentication_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Build the worker's Authenticator once the keys runtime and the hotkey directory exist."""
    state = app.state
    runtime = state.keys_runtime
    state.authenticator = Authenticator(
        state.settings.auth,
        runtime.cache,
        runtime.limiter,
        runtime.epistula,
        state.hotkey_directory,
        state.settings.identities,
        state.fiber.verifier,
    )
    yield
