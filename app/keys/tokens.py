"""API key tokens: the `pylon_<id>_<secret>` format, minting, hashing, and what verifying one needs.

Secrets are 256 random bits, so a plain SHA-256 is enough (a slow hash protects guessable passwords, not
random tokens) and verifying costs about a microsecond.
"""

from __future__ import annotations

import hashlib
import secrets
import string

import msgspec

from app.auth.context import Principal

PREFIX = "pylon"
ID_LENGTH = 12
# Lowercase letters and digits: the id never contains the `_` separator and survives any copy-paste.
ID_ALPHABET = string.ascii_lowercase + string.digits
SECRET_BYTES = 32


class MintedKey(msgspec.Struct, frozen=True):
    id: str
    secret: str
    secret_hash: str

    @property
    def token(self) -> str:
        return f"{PREFIX}_{self.id}_{self.secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_key() -> MintedKey:
    """A new id and secret (43 url-safe characters from 32 random bytes)."""
    key_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return MintedKey(id=key_id, secret=secret, secret_hash=hash_secret(secret))


def parse_key(token: str) -> tuple[str, str] | None:
    """Split `pylon_<id>_<secret>`; None when the token does not have that shape."""
    prefix, sep, rest = token.partition("_")
    if prefix != PREFIX or not sep:
        return None
    key_id, sep, secret = rest.partition("_")
    if not sep or len(key_id) != ID_LENGTH or len(secret) < 32 or not set(key_id) <= set(ID_ALPHABET):
        return None
    return key_id, secret


class CachedKey(msgspec.Struct, frozen=True, kw_only=True):
    """What verifying a key needs, without the database."""

    id: str
    secret_hash: bytes
    principal: Principal
    rpm: int | None = None
    tpm: int | None = None
    # Unix times.
    expires_at: float | None = None
    revoked: bool = False

    def matches(self, secret: str) -> bool:
        return secrets.compare_digest(hashlib.sha256(secret.encode()).digest(), self.secret_hash)
