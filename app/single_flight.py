"""Single-flight: concurrent callers asking for the same key share one call instead of each making it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The first caller for a key runs `make()`; callers arriving while it runs await the same result.

    A caller that is cancelled while waiting does not cancel the call the others wait on (`shield`).
    """

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await make()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            # Nobody else may be waiting: mark the exception retrieved so it is not logged as lost.
            future.exception()
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(result)
        return result
