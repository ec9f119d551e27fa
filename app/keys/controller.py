"""The keys admin API (`keys:admin`): create, list, show, change, revoke keys and read their usage."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from app.auth.scopes import Scope
from app.errors import http_exception_handler
from app.keys.runtime import KeysRuntime
from app.keys.schemas import KeyCreate, KeyCreated, KeyInfo, KeyUpdate, KeyUsage
from app.keys.service import InvalidKeyRequest, KeyNotFoundError, KeyService


def _runtime(request: Request) -> KeysRuntime:
    runtime: KeysRuntime = request.app.state.keys_runtime
    return runtime


def key_error_handler(request: Request, exc: Exception) -> Response:
    """The service's errors as HTTP: an unknown key 404, a request it cannot carry out 400."""
    if isinstance(exc, KeyNotFoundError):
        return http_exception_handler(request, NotFoundException(str(exc)))
    field = exc.field if isinstance(exc, InvalidKeyRequest) else None
    extra = [{"message": str(exc), "key": field, "source": "body"}] if field else None
    return http_exception_handler(request, ValidationException(str(exc), extra=extra))


def known_identities(request: Request) -> list[str] | None:
    """The identity names this Pylon signs for (None: the weights feature is not running here)."""
    weights = request.app.state.get("weights")
    return None if weights is None else list(weights.identities)


class KeyController(Controller):
    path = "/api/v1/keys"
    tags = ["keys"]
    opt = {"scope": Scope.KEYS_ADMIN}
    exception_handlers = {KeyNotFoundError: key_error_handler, InvalidKeyRequest: key_error_handler}

    @post("/")
    async def create_key(self, request: Request, data: JSONBody[KeyCreate]) -> KeyCreated:
        """Create a key. The response's `key` is the secret: shown this once, stored only as a hash."""
        async with _runtime(request).sessions() as session:
            created = await KeyService(session).create(data, identities=known_identities(request))
        _runtime(request).changed(created.id)
        return created

    @get("/")
    async def list_keys(self, request: Request, include_revoked: FromQuery[bool] = True) -> list[KeyInfo]:
        """Every key (never a secret), oldest first."""
        async with _runtime(request).sessions() as session:
            return await KeyService(session).list(include_revoked=include_revoked)

    @get("/{key_id:str}")
    async def get_key(self, request: Request, key_id: FromPath[str]) -> KeyInfo:
        """One key."""
        async with _runtime(request).sessions() as session:
            return await KeyService(session).get(key_id)

    @patch("/{key_id:str}")
    async def update_key(self, request: Request, key_id: FromPath[str], data: JSONBody[KeyUpdate]) -> KeyInfo:
        """Change a key's name, limits or expiry; omitted fields stay, `null` clears a limit or the expiry."""
        async with _runtime(request).sessions() as session:
            info = await KeyService(session).update(key_id, data)
        _runtime(request).changed(key_id)
        return info

    @delete("/{key_id:str}", status_code=200)
    async def revoke_key(self, request: Request, key_id: FromPath[str]) -> KeyInfo:
        """Revoke a key for good: refused at once here, within about a second by every other worker."""
        async with _runtime(request).sessions() as session:
            info = await KeyService(session).revoke(key_id)
        _runtime(request).changed(key_id)
        return info

    @get("/{key_id:str}/usage")
    async def key_usage(
        self,
        request: Request,
        key_id: FromPath[str],
        days: Annotated[int, QueryParameter(ge=1, le=366)] = 30,
    ) -> KeyUsage:
        """Totals and a per-day series (UTC) over the last `days` days; also accepts an Epistula hotkey."""
        runtime = _runtime(request)
        # This worker's unwritten rows count too; other workers' land within their flush interval.
        await runtime.usage.flush()
        async with runtime.sessions() as session:
            return await KeyService(session).usage(key_id, days=days)
