"""A Fiber validator written from Fiber's published wire format (rayonlabs/fiber), for the tests.

It imports nothing of Pylon: signatures with bittensor_wallet keypairs, RSA and Fernet with cryptography,
httpx for HTTP. Fiber 2 signed requests (`fiber/validator/client.py: get_headers_with_nonce`), MLTS
handshake and encrypted calls (`fiber/encrypted/validator/handshake.py`, `.../client.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import string
import time
from typing import Any

import httpx
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def generate_nonce(at_ns: int | None = None) -> str:
    stamp = time.time_ns() if at_ns is None else at_ns
    return f"{stamp}_{''.join(random.choices(string.ascii_letters + string.digits, k=10))}"


def sign(keypair: Any, message: str) -> str:
    return "0x" + bytes(keypair.sign(message.encode())).hex()


def signed_headers(keypair: Any, miner_hotkey: str, body: bytes, nonce: str | None = None) -> dict[str, str]:
    """Fiber 2: `nonce:miner_hotkey:sha256(body)`."""
    nonce = nonce or generate_nonce()
    message = f"{nonce}:{miner_hotkey}:{hashlib.sha256(body).hexdigest()}"
    return {
        "validator-hotkey": keypair.ss58_address,
        "miner-hotkey": miner_hotkey,
        "nonce": nonce,
        "signature": sign(keypair, message),
    }


def mlts_headers(keypair: Any, miner_hotkey: str, key_uuid: str, nonce: str | None = None) -> dict[str, str]:
    """MLTS: `nonce:miner_hotkey:symmetric_key_uuid`, as `get_headers_with_nonce` sends it."""
    nonce = nonce or generate_nonce()
    return {
        "Content-Type": "application/octet-stream",
        "symmetric-key-uuid": key_uuid,
        "validator-hotkey": keypair.ss58_address,
        "miner-hotkey": miner_hotkey,
        "nonce": nonce,
        "signature": sign(keypair, f"{nonce}:{miner_hotkey}:{key_uuid}"),
    }


class Session:
    def __init__(self, fernet: Fernet, key_uuid: str, miner_hotkey: str) -> None:
        self.fernet, self.key_uuid, self.miner_hotkey = fernet, key_uuid, miner_hotkey


async def public_key(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    answer = await http.get(f"{base}/public-encryption-key")
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


async def exchange(
    http: httpx.AsyncClient, base: str, keypair: Any, miner_hotkey: str, pem: str, key_uuid: str | None = None
) -> tuple[httpx.Response, Session]:
    rsa_key = serialization.load_pem_public_key(pem.encode())
    symmetric_key = os.urandom(32)
    key_uuid = key_uuid or os.urandom(32).hex()
    encrypted = rsa_key.encrypt(  # type: ignore[union-attr]
        symmetric_key,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    payload = {"encrypted_symmetric_key": base64.b64encode(encrypted).decode("utf-8")}
    headers = {**mlts_headers(keypair, miner_hotkey, key_uuid), "Content-Type": "application/json"}
    answer = await http.post(f"{base}/exchange-symmetric-key", json=payload, headers=headers)
    # Fiber's validator keeps base64.b64encode(symmetric_key) and builds its Fernet from it.
    return answer, Session(Fernet(base64.b64encode(symmetric_key)), key_uuid, miner_hotkey)


async def handshake(http: httpx.AsyncClient, base: str, keypair: Any) -> Session:
    key = await public_key(http, base)
    answer, session = await exchange(http, base, keypair, key["hotkey"], key["public_key"])
    assert answer.status_code == 200, answer.text
    return session


def encrypt_payload(session: Session, payload: dict[str, Any]) -> bytes:
    # `make_non_streamed_post`: a nonce in the payload too.
    return session.fernet.encrypt(json.dumps({**payload, "nonce": generate_nonce()}).encode())


async def encrypted_post(
    http: httpx.AsyncClient,
    base: str,
    keypair: Any,
    session: Session,
    endpoint: str,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        base + endpoint,
        content=encrypt_payload(session, payload),
        headers=headers or mlts_headers(keypair, session.miner_hotkey, session.key_uuid),
    )


def opened(session: Session, answer: httpx.Response) -> bytes:
    """The sealed answer's plaintext (one token, or one token per line for a stream)."""
    if answer.headers.get("x-pylon-fiber-encoding") == "fernet-lines":
        return b"".join(session.fernet.decrypt(line) for line in answer.content.split(b"\n") if line)
    return session.fernet.decrypt(answer.content)
