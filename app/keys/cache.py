"""The per-worker cache of API keys that authentication verifies against.

One entry per key id (or a short-lived "unknown" for ids the database does not have). It is emptied for a
key at once in the process that changed it and, in every other process, when the change feed
(`api_key_changes`) is next polled (`PYLON_KEYS_SYNC_INTERVAL`; see app/keys/runtime.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from app.keys.tokens import CachedKey
from app.single_flight import SingleFlight

# Unknown ids are remembered briefly so a client retrying with a bad key does not hit the database each time.
NEGATIVE_TTL = 5.0
MAX_ENTRIES = 100_000


class _NotCached:
    """`KeyCache.lookup`'s answer when the cache does not know the id (ask `get`, which loads it)."""

    def __repr__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED: Final = _NotCached()

KeyLoader = Callable[[str], Awaitable[CachedKey | None]]


class KeyCache:
    """Key id -> CachedKey (or None for an unknown id), loaded once and kept until invalidated or stale."""

    def __init__(self, loader: KeyLoader, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[CachedKey | None, float]] = {}
        self._loads: SingleFlight[CachedKey | None] = SingleFlight()
        # Bumped by every invalidation so a load that started before it does not store stale data.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key_id: str) -> CachedKey | _NotCached | None:
        """The cached answer without loading: the key, None for an id known not to exist, or NOT_CACHED."""
        entry = self._entries.get(key_id)
        if entry is not None and self._clock() < entry[1]:
            return entry[0]
        return NOT_CACHED

    async def get(self, key_id: str) -> CachedKey | None:
        cached = self.lookup(key_id)
        if not isinstance(cached, _NotCached):
            return cached
        return await self._loads.run(key_id, lambda: self._load(key_id))

    async def _load(self, key_id: str) -> CachedKey | None:
        now = self._clock()
        generation = self._generation
        value = await self._loader(key_id)
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
