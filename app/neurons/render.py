"""The metagraph as an HTTP answer: its bytes, `ETag`, `X-Pylon-Block`, 304 for a matching `If-None-Match`,
and `Age` with `X-Pylon-Stale: true` while the chain is unreachable. The routed and the hot routes answer
through `metagraph_answer` alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from app.chain.metagraph import CachedMetagraph
from app.http.raw import JSON, Header, RawResponse

# Prebuilt 200 answers of the latest metagraphs, by ETag (which names netuid and block), with the metagraph
# they were built from: built once per block, reused by every request. Bounded: dropped wholesale.
_PREBUILT: dict[str, tuple[CachedMetagraph, RawResponse]] = {}
_PREBUILT_MAX = 256


def _headers(cached: CachedMetagraph) -> list[Header]:
    return [
        (b"content-type", JSON),
        (b"content-length", str(len(cached.body)).encode()),
        (b"etag", cached.etag.encode()),
        (b"x-pylon-block", str(cached.block.number).encode()),
    ]


def _prebuilt(cached: CachedMetagraph) -> RawResponse:
    entry = _PREBUILT.get(cached.etag)
    # Another app in this process (tests) may hold another metagraph under the same ETag.
    if entry is not None and entry[0] is cached:
        return entry[1]
    if len(_PREBUILT) >= _PREBUILT_MAX:
        _PREBUILT.clear()
    response = RawResponse(200, _headers(cached), cached.body)
    _PREBUILT[cached.etag] = (cached, response)
    return response


def metagraph_answer(
    cached: CachedMetagraph, request_headers: Iterable[Header], stale_age: float | None = None
) -> RawResponse:
    """The answer to a metagraph request; `stale_age` (seconds since the last head) marks it stale."""
    etag = cached.etag.encode()
    for name, value in request_headers:
        if name == b"if-none-match" and value == etag:
            headers = [h for h in _headers(cached) if h[0] != b"content-length"]
            if stale_age is not None:
                headers += _stale_headers(stale_age)
            return RawResponse(304, headers, b"")
    if stale_age is not None:
        return RawResponse(200, [*_headers(cached), *_stale_headers(stale_age)], cached.body)
    return _prebuilt(cached)


def _stale_headers(age: float) -> list[Header]:
    return [(b"age", str(math.floor(age)).encode()), (b"x-pylon-stale", b"true")]
