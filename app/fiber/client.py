"""A Fiber MLTS client: what a validator (Pylon's subnet gateway) uses to call miners that speak Fiber.

`FiberClient.post(base_url, miner_hotkey, path, body, timeout)` does the handshake the first time it
meets a miner (`GET /public-encryption-key`, `POST /exchange-symmetric-key`, as
`fiber/encrypted/validator/handshake.py: perform_handshake`), keeps the symmetric key per miner, and sends
the body as a Fernet token with Fiber's signed headers (`get_headers_with_nonce`). It answers
`(status, headers, body)` with the body opened: a Pylon miner seals its answers (one token, or one token
per line for streams; app/fiber/envelope.py), a plain Fiber miner answers in the clear, which passes as
it is. A miner that no longer knows the key (it expired or the miner restarted elsewhere) answers 400
with `extra.requires_handshake`: the client exchanges a new key and sends once more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import string
import time
from typing import Any

import httpx
import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.fiber import wire
from app.fiber.keys import OAEP

# Below the miner's 5 hours (Fiber's default), so a key is renewed before the miner forgets it.
DEFAULT_KEY_LIFETIME = 4 * 3600.0
ALPHABET = string.ascii_letters + string.digits


class FiberClientError(Exception):
    """The handshake failed (the miner is unreachable, not Fiber, or refused the exchange)."""


def generate_nonce() -> str:
    """Fiber's nonce (`fiber/validator/generate_nonce.py`): nanoseconds, `_`, 10 random characters."""
    return f"{time.time_ns()}_{''.join(random.choices(ALPHABET, k=10))}"


class _Session(msgspec.Struct):
    fernet: Fernet
    key_uuid: str
    expires_at: float


class FiberClient:
    """Signed, encrypted calls to Fiber miners from one validator hotkey (a bittensor_wallet Keypair)."""

    def __init__(
        self,
        keypair: Any,
        http: httpx.AsyncClient | None = None,
        key_lifetime: float = DEFAULT_KEY_LIFETIME,
    ) -> None:
        self.keypair = keypair
        self.hotkey: str = keypair.ss58_address
        self.http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.key_lifetime = key_lifetime
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def close(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    def headers(self, miner_hotkey: str, key_uuid: str) -> dict[str, str]:
        """Fiber's MLTS headers: the signature over `nonce:miner_hotkey:uuid`."""
        nonce = generate_nonce()
        signature = self.keypair.sign(wire.mlts_message(nonce, miner_hotkey, key_uuid).encode())
        return {
            wire.H_KEY_UUID: key_uuid,
            wire.H_VALIDATOR: self.hotkey,
            wire.H_MINER: miner_hotkey,
            wire.H_NONCE: nonce,
            wire.H_SIGNATURE: "0x" + bytes(signature).hex(),
        }

    async def post(
        self,
        base_url: str,
        miner_hotkey: str,
        path: str,
        body: bytes,
        timeout: float,  # noqa: ASYNC109 (per request, as httpx takes it)
    ) -> tuple[int, dict[str, str], bytes]:
        """POST `body` (JSON bytes) to `path` on the miner, encrypted; the answer opened."""
        for attempt in (1, 2):
            session = await self._session(base_url, miner_hotkey, timeout, renew=attempt == 2)
            response = await self.http.post(
                base_url.rstrip("/") + path,
                content=session.fernet.encrypt(body),
                headers={
                    **self.headers(miner_hotkey, session.key_uuid),
                    "Content-Type": "application/octet-stream",
                },
                timeout=timeout,
            )
            if attempt == 1 and _requires_handshake(response):
                continue
            return _opened(response, session.fernet)
        raise AssertionError("unreachable")

    async def _session(self, base_url: str, miner_hotkey: str, timeout: float, renew: bool) -> _Session:  # noqa: ASYNC109
        key = (base_url, miner_hotkey)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            session = self._sessions.get(key)
            if session is None or renew or session.expires_at <= time.time():
                session = await self.handshake(base_url, miner_hotkey, timeout)
                self._sessions[key] = session
            return session

    async def handshake(self, base_url: str, miner_hotkey: str, timeout: float) -> _Session:  # noqa: ASYNC109
        """Fetch the miner's RSA key and exchange a new symmetric key with it."""
        base = base_url.rstrip("/")
        try:
            answer = await self.http.get(base + wire.PUBLIC_KEY_PATH, timeout=timeout)
            answer.raise_for_status()
            public_key = serialization.load_pem_public_key(answer.json()["public_key"].encode())
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            raise FiberClientError(f"{base}: no Fiber public key: {exc}") from exc
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise FiberClientError(f"{base}: the public key is not RSA")
        raw = os.urandom(32)
        key_uuid = os.urandom(32).hex()
        payload = {"encrypted_symmetric_key": base64.b64encode(public_key.encrypt(raw, OAEP)).decode()}
        try:
            exchanged = await self.http.post(
                base + wire.EXCHANGE_PATH,
                content=json.dumps(payload).encode(),
                headers={**self.headers(miner_hotkey, key_uuid), "Content-Type": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise FiberClientError(f"{base}: key exchange failed: {exc}") from exc
        if exchanged.status_code != 200:
            raise FiberClientError(
                f"{base}: key exchange refused ({exchanged.status_code}): {exchanged.text}"
            )
        return _Session(
            fernet=Fernet(base64.urlsafe_b64encode(raw)),
            key_uuid=key_uuid,
            expires_at=time.time() + self.key_lifetime,
        )


def _requires_handshake(response: httpx.Response) -> bool:
    if response.status_code != 400 or not response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        return False
    try:
        return bool(response.json().get("extra", {}).get("requires_handshake"))
    except (ValueError, AttributeError):
        return False


def _opened(response: httpx.Response, fernet: Fernet) -> tuple[int, dict[str, str], bytes]:
    headers = dict(response.headers)
    encoding = headers.pop("x-pylon-fiber-encoding", None)
    body = response.content
    try:
        if encoding == "fernet":
            body = fernet.decrypt(body)
        elif encoding == "fernet-lines":
            body = b"".join(fernet.decrypt(line) for line in body.split(b"\n") if line)
    except InvalidToken:
        raise FiberClientError("the miner's answer is not sealed with this session's key") from None
    if encoding is not None:
        headers["content-type"] = headers.pop("x-pylon-fiber-content-type", "application/json")
        headers["content-length"] = str(len(body))
    return response.status_code, headers, body
