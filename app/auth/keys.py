"""API keys: the `pylon_<id>_<secret>` format, hashing, and the in-memory cache the guard verifies against.

Secrets are 256 random bits, so a plain SHA-256 is enough (a slow hash protects guessable passwords, not
random tokens) and verifying costs about a microsecond. The cache holds one entry per key id; it is
emptied for a key at once in the process that changed it and, in every other process, when the change
feed (`api_key_changes`) is next polled (`PYLON_KEYS_SYNC_INTERVAL`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import time
from collections.abc import Awaitable, Callable

import msgspec

from app.auth.context import Principal

PREFIX = "pylon"
ID_LENGTH = 12
# Lowercase letters and digits: the id never contains the `_` separator and survives any copy-paste.
ID_ALPHABET = string.ascii_lowercase + string.digits
SECRET_BYTES = 32
# Unknown ids are remembered briefly so a client retrying with a bad key does not hit the database each time.
NEGATIVE_TTL = 5.0
MAX_ENTRIES = 100_000


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


KeyLoader = Callable[[str], Awaitable[CachedKey | None]]


class KeyCache:
    """Key id -> CachedKey (or None for an unknown id), loaded once and kept until invalidated or stale."""

    def __init__(self, loader: KeyLoader, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[CachedKey | None, float]] = {}
        self._loading: dict[str, asyncio.Future[CachedKey | None]] = {}
        # Bumped by every invalidation so a load that started before it does not store stale data.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key_id: str) -> CachedKey | None:
        """The cached key if it is known and fresh, without loading: None means "ask `get`"."""
        entry = self._entries.get(key_id)
        if entry is not None and self._clock() < entry[1]:
            return entry[0]
        return None

    async def get(self, key_id: str) -> CachedKey | None:
        entry = self._entries.get(key_id)
        now = self._clock()
        if entry is not None:
            value, expires = entry
            if now < expires:
                return value
        pending = self._loading.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CachedKey | None] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        generation = self._generation
        try:
            value = await self._loader(key_id)
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; mark the exception retrieved.
            future.exception()
            raise
        finally:
            self._loading.pop(key_id, None)
        future.set_result(value)
        if generation == self._generation:
            self._store(key_id, value, now)
        return value

    def _store(self, key_id: str, value: CachedKey | None, now: float) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            # Flooding with random ids must not grow memory: drop the unknowns first, everything if needed.
            self._entries = {k: v for k, v in self._entries.items() if v[0] is not None}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[key_id] = (value, now + (self._ttl if value is not None else NEGATIVE_TTL))

    def invalidate(self, key_id: str) -> None:
        self._generation += 1
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
