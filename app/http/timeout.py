"""`X-Pylon-Timeout: <seconds>`: how long the caller will wait (bittensor-pylon's client sends it on every
call). A request that runs past it answers 504 instead of finishing for nobody; a value that is not a
positive number is 400. Values above `PYLON_MAX_REQUEST_TIMEOUT` are capped to it. Without the header a
request is bounded only by its own timeouts (chain calls, backends)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Iterable

from litestar.types import Message, Receive, Send

from app.http.raw import Header, RawResponse, json_response

TIMEOUT_HEADER = b"x-pylon-timeout"


def _error(status: int, detail: str) -> RawResponse:
    return json_response(status, json.dumps({"status_code": status, "detail": detail}).encode())


def requested_timeout(headers: Iterable[Header], maximum: float) -> float | RawResponse | None:
    """The caller's timeout in seconds (capped at `maximum`), a 400 answer for a bad value, or None."""
    for name, value in headers:
        if name == TIMEOUT_HEADER:
            text = value.decode("latin-1").strip()
            try:
                seconds = float(text)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds <= 0:
                return _error(400, f"X-Pylon-Timeout must be a positive number of seconds, got {text!r}")
            return min(seconds, maximum)
    return None


async def within(
    seconds: float,
    answer: Callable[[Send], Awaitable[int]],
    receive: Receive,
    send: Send,
    extra_headers: list[Header],
) -> int:
    """Run `answer(send)`; past `seconds`, cancel it and answer 504 (or, if it had started answering, stop
    there: the caller sees a cut response, as it would from any proxy timeout)."""
    status: int | None = None

    async def tracking_send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        async with asyncio.timeout(seconds) as deadline:
            return await answer(tracking_send)
    except TimeoutError:
        if not deadline.expired():
            raise
    if status is not None:
        return status
    detail = f"the request did not finish within X-Pylon-Timeout ({seconds:g} s)"
    return await _error(504, detail).respond(receive, send, extra_headers)
