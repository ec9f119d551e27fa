"""MLTS: the public key, key exchanges, and opening and sealing encrypted bodies. Plain values in and
out; failures are `FiberError` (a status and a message), which the controller and the envelope render."""

from __future__ import annotations

import base64
import binascii
import time

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from app.fiber import wire
from app.fiber.keys import SYMMETRIC_KEY_BYTES, RsaKey, SymmetricKeys
from app.fiber.schemas import ExchangeResponse, PublicKeyResponse
from app.fiber.verify import FiberVerifier
from app.settings import Settings


class FiberError(Exception):
    def __init__(self, status_code: int, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.extra = extra


class FiberService:
    """The worker's Fiber state: the verifier (used by the Authenticator), the RSA key, symmetric keys."""

    def __init__(self, settings: Settings, verifier: FiberVerifier) -> None:
        self.verifier = verifier
        self.rsa = RsaKey(settings.data_dir)
        self.keys = SymmetricKeys(settings.data_dir, settings.fiber.symmetric_key_ttl)

    def public_key(self) -> PublicKeyResponse:
        """This miner's public key and hotkey, as Fiber's `get_public_key` answers."""
        hotkey = self.verifier.own_hotkey
        if not hotkey:
            raise FiberError(
                503, "Fiber is not enabled: set PYLON_EPISTULA_HOTKEY or a default wallet (PYLON_WALLET_*)"
            )
        self.rsa.current()
        return PublicKeyResponse(public_key=self.rsa.public_pem, timestamp=time.time(), hotkey=hotkey)

    def exchange(self, validator: str, key_uuid: str, encrypted_symmetric_key: str) -> ExchangeResponse:
        """Decrypt and keep a validator's symmetric key (its request already verified)."""
        try:
            ciphertext = base64.b64decode(encrypted_symmetric_key, validate=True)
        except (binascii.Error, ValueError):
            raise FiberError(400, "encrypted_symmetric_key is not base64") from None
        try:
            raw = self.rsa.decrypt(ciphertext)
        except ValueError:
            raise FiberError(
                400,
                "cannot decrypt encrypted_symmetric_key with this miner's RSA key: "
                "fetch /public-encryption-key again (it may have been rotated)",
            ) from None
        if len(raw) != SYMMETRIC_KEY_BYTES:
            raise FiberError(400, f"the symmetric key must be {SYMMETRIC_KEY_BYTES} bytes, got {len(raw)}")
        expires_at = self.keys.add(validator, key_uuid, raw)
        return ExchangeResponse(status="Symmetric key exchanged successfully", expires_at=expires_at)

    def fernet(self, validator: str, key_uuid: str) -> Fernet:
        fernet = self.keys.get(validator, key_uuid)
        if fernet is None:
            raise FiberError(
                400,
                "no symmetric key for this validator-hotkey and symmetric-key-uuid (unknown or expired): "
                "exchange one at /exchange-symmetric-key",
                requires_handshake=True,
            )
        return fernet

    @staticmethod
    def open(fernet: Fernet, token: bytes) -> bytes:
        """The plaintext of an encrypted call, without the `nonce` key Fiber's client adds to it."""
        try:
            plaintext = fernet.decrypt(token)
        except InvalidToken:
            raise FiberError(
                400,
                "the body is not a Fernet token of this symmetric key (tampered, truncated or another key)",
            ) from None
        return _without_body_nonce(plaintext)


def _without_body_nonce(plaintext: bytes) -> bytes:
    # `make_non_streamed_post` adds `"nonce"` to the payload; Pylon's routes (and the backends behind them)
    # do not know it. Other bodies pass byte for byte.
    if b'"' + wire.BODY_NONCE.encode() + b'"' not in plaintext or not plaintext.lstrip().startswith(b"{"):
        return plaintext
    try:
        payload = msgspec.json.decode(plaintext)
    except msgspec.DecodeError:
        return plaintext
    if not isinstance(payload, dict) or wire.BODY_NONCE not in payload:
        return plaintext
    del payload[wire.BODY_NONCE]
    return msgspec.json.encode(payload)
