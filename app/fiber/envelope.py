"""MLTS encrypted calls: a request whose body is a Fernet token, opened at the edge and routed as any other.

A request carrying `symmetric-key-uuid` (other than the exchange itself) is Fiber's encrypted call
(`fiber/encrypted/validator/client.py: make_non_streamed_post`). The envelope:
1. reads the body and authenticates the headers through the one Authenticator (MLTS message
   `nonce:miner_hotkey:uuid`, nonce rules, signer rules): refusals are plain JSON 4xx;
2. opens the body with the validator's key for that uuid (unknown key or a token that does not verify: 400);
3. hands the plaintext to the edge's dispatch, as a JSON request without Fiber's headers, with the caller
   admitted for `ENVELOPE_REQUIREMENT` (the routes declaring `{"scope": "inference", "epistula": True,
   "fiber": True}`: the /v1 routes and any route that accepts validators the same way). Other routes
   refuse it as they refuse a caller without credentials;
4. seals the answer with the same key: `Content-Type: application/octet-stream`, the body one Fernet
   token (`x-pylon-fiber-encoding: fernet`); a streamed answer (server-sent events) is one token per chunk,
   each on its own line (`fernet-lines`), so `response.aiter_lines()` reads them one by one. The route's
   own content type is in `x-pylon-fiber-content-type`; the status is the route's.
Fiber's own miners answer in the clear; Pylon encrypts answers because the seed's miners do (the Loosh
miner encrypts its challenge answers with the same Fernet key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.types import HTTPScope, Receive, Send

from app.auth.refusal import Refusal
from app.auth.scopes import Scope
from app.fiber import wire
from app.fiber.service import FiberError, FiberService
from app.http.authenticate import Pending, Requirement
from app.http.context import RequestContext
from app.http.raw import BodyTooLarge, ClientGone, json_response, read_body

ENVELOPE_REQUIREMENT = Requirement(scope=str(Scope.INFERENCE), epistula=True, fiber=True)
EXEMPT_PATHS = frozenset({wire.EXCHANGE_PATH, wire.PUBLIC_KEY_PATH})
SEALED_TYPE = b"application/octet-stream"
H_ENCODING = b"x-pylon-fiber-encoding"
H_CONTENT_TYPE = b"x-pylon-fiber-content-type"
_DROPPED = wire.FIBER_HEADERS | {b"content-type", b"content-length"}

Dispatch = Callable[[RequestContext, HTTPScope, Receive, Send], Awaitable[int]]


class FiberEnvelope:
    """The edge's envelope for MLTS calls (see the module docstring)."""

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def wraps(self, scope: HTTPScope) -> bool:
        if scope["path"] in EXEMPT_PATHS:
            return False
        return any(name == wire.B_KEY_UUID for name, _ in scope["headers"])

    async def open(
        self,
        state: Any,
        context: RequestContext,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
        dispatch: Dispatch,
    ) -> int:
        try:
            token = await read_body(scope, receive, self.max_body_size)
        except ClientGone:
            return 499
        except BodyTooLarge:
            return await _refuse(
                context, receive, send, 413, f"the body is larger than {self.max_body_size} bytes", {}
            )
        headers = scope["headers"]
        authenticator = state.authenticator
        admitted = authenticator.check(headers, ENVELOPE_REQUIREMENT)
        if isinstance(admitted, Pending):

            async def body() -> bytes:
                return token

            admitted = await authenticator.complete(admitted, headers, body)
        if isinstance(admitted, Refusal):
            context.principal = admitted.principal
            return await _refuse(
                context,
                receive,
                send,
                admitted.status_code,
                admitted.detail,
                admitted.extra,
                admitted.headers,
            )
        fiber: FiberService = state.fiber
        named = {name: value.decode("latin-1") for name, value in headers if name in wire.FIBER_HEADERS}
        validator, key_uuid = named[wire.B_VALIDATOR], named[wire.B_KEY_UUID]
        context.principal = admitted
        try:
            fernet = fiber.fernet(validator, key_uuid)
            plaintext = fiber.open(fernet, token)
        except FiberError as exc:
            return await _refuse(context, receive, send, exc.status_code, exc.detail, exc.extra)
        context.admitted_for = ENVELOPE_REQUIREMENT
        inner: HTTPScope = {**scope}
        inner["headers"] = [
            *(header for header in headers if header[0] not in _DROPPED),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(plaintext)).encode()),
        ]
        sent = False

        async def inner_receive() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": plaintext, "more_body": False}
            return await receive()

        sealer = _Sealer(fernet.encrypt, send)
        status = await dispatch(context, inner, inner_receive, sealer.send)
        return sealer.status or status


class _Sealer:
    """Encrypts an answer on its way out: buffered into one token, or one token per streamed chunk."""

    def __init__(self, encrypt: Callable[[bytes], bytes], send: Send) -> None:
        self.encrypt = encrypt
        self.downstream: Callable[[Any], Awaitable[None]] = send
        self.status = 0
        self.start: dict[str, Any] = {}
        self.streaming = False
        self.chunks: list[bytes] = []

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            original = b""
            kept = []
            for name, value in message.get("headers", ()):
                lower = name.lower()
                if lower == b"content-type":
                    original = value
                elif lower != b"content-length":
                    kept.append((name, value))
            self.streaming = original.startswith(b"text/event-stream")
            kept += [(b"content-type", SEALED_TYPE), (H_CONTENT_TYPE, original)]
            kept.append((H_ENCODING, b"fernet-lines" if self.streaming else b"fernet"))
            self.start = {**message, "headers": kept}
            if self.streaming:
                await self.downstream(self.start)
            return
        if kind != "http.response.body":
            await self.downstream(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.streaming:
            out = self.encrypt(body) + b"\n" if body else b""
            await self.downstream({"type": "http.response.body", "body": out, "more_body": more})
            return
        if body:
            self.chunks.append(body)
        if more:
            return
        sealed = self.encrypt(b"".join(self.chunks))
        start_headers = [*self.start["headers"], (b"content-length", str(len(sealed)).encode())]
        await self.downstream({**self.start, "headers": start_headers})
        await self.downstream({"type": "http.response.body", "body": sealed, "more_body": False})


async def _refuse(
    context: RequestContext,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    extra: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> int:
    """A refusal of the envelope itself, in Pylon's error format and in the clear: the caller may not
    hold a key this miner knows."""
    body = msgspec.json.encode({"status_code": status, "detail": detail, "extra": extra or {}})
    extra_headers = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    response = json_response(status, body, extra_headers)
    return await response.respond(receive, send, (context.request_id_header,))
