"""The latest metagraph ahead of Litestar's router (see app/fastpath.py): validators poll it every few
seconds, so serving it is a header scan, a key-cache lookup and one send of bytes encoded once per block.

Only a warm cache and a caller known without I/O are served here; the routes in controller.py answer the
rest (cold cache, unknown netuid, refusals) with their usual errors.
"""

from __future__ import annotations

from litestar.types import HTTPScope, Receive, Send

from app.auth.guards import authorize_cached
from app.auth.scopes import Scope as AuthScope
from app.chain.metagraph import MetagraphCache
from app.fastpath import answer_fast
from app.neurons.controller import cached_response

# Litestar's templates for these routes (the metrics' and usage records' `route`): a test checks they
# match what the router gives the same requests.
SUBNET_LATEST = "/api/v1/subnet/{netuid}/neurons/latest"
DEFAULT_LATEST = "/api/v1/neurons/latest"
_PREFIX = "/api/v1/subnet/"
_SUFFIX = "/neurons/latest"
_REQUIRED = str(AuthScope.NEURONS_READ)


def _netuid_and_template(path: str, default_netuid: int) -> tuple[int, str] | None:
    if path == DEFAULT_LATEST:
        return default_netuid, DEFAULT_LATEST
    if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
        netuid = path[len(_PREFIX) : -len(_SUFFIX)]
        # ASCII digits only, as Litestar's `{netuid:int}` would accept them, and no absurd lengths.
        if netuid.isascii() and netuid.isdigit() and len(netuid) <= 5:
            return int(netuid), SUBNET_LATEST
    return None


async def latest_neurons(scope: HTTPScope, receive: Receive, send: Send) -> bool:
    if scope["method"] != "GET":
        return False
    state = scope["app"].state
    matched = _netuid_and_template(scope["path"], state.settings.chain.netuid)
    if matched is None:
        return False
    netuid, template = matched
    cache: MetagraphCache = state.metagraph
    cached = cache.peek(netuid)
    if cached is None:
        return False
    principal = authorize_cached(scope, state, _REQUIRED)
    if principal is None:
        return False
    cache.count_hit()
    response = cached_response(scope, cache, cached)

    await answer_fast(scope, template, principal, lambda header: response.send_with(send, header))
    return True
