"""Fiber's MLTS bodies (as `fiber/miner/core/models/encryption.py` names them) and `/availability`."""

from __future__ import annotations

import msgspec


class PublicKeyResponse(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /public-encryption-key`: the miner's RSA public key (PEM, SubjectPublicKeyInfo)."""

    public_key: str
    timestamp: float
    hotkey: str


class SymmetricKeyExchange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /exchange-symmetric-key`: 32 random bytes, RSA-OAEP encrypted to the public key, in base64."""

    encrypted_symmetric_key: str


class ExchangeResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    # Unix time at which the key stops being accepted (PYLON_FIBER_SYMMETRIC_KEY_TTL after the exchange).
    expires_at: float


class Availability(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`GET /availability`, as miners of Fiber subnets answer it: `{"available": true}`, or false with why."""

    available: bool
    reason: str | None = None
