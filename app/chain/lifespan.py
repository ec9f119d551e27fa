"""Building the chain client for the configured network, and the app's lifespan hook that owns it.

The hook puts on `app.state`:
- `chain`: the `ChainClient` (the development chain for `PYLON_NETWORK=local`, turbobt otherwise);
- `metagraph`: the `MetagraphCache` (`await app.state.metagraph.latest(netuid)`,
  `app.state.metagraph.lookup(netuid, hotkey)`), its watcher running;
and registers `/ready`'s "chain" check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from app.chain.client import ChainClient
from app.chain.metagraph import MetagraphCache, MetagraphHotkeyDirectory
from app.health import ready_checks
from app.settings import Settings

log = structlog.get_logger(__name__)

# Subtensor's block time: the head age beyond which the real chain counts as stalled is a few of these.
CHAIN_BLOCK_TIME = 12.0


def build_chain_client(settings: Settings) -> ChainClient:
    """The client for `PYLON_NETWORK`: the development chain for `local`, turbobt for anything else.

    The development chain is read through its node when one serves it (`PYLON_LOCAL_NODE_URL`, set by
    `pylon serve` for its workers), so that every process sees one chain; otherwise it is simulated here.
    """
    from app.chain.turbobt import TurbobtChainClient

    if settings.chain.network == "local":
        if settings.devchain.node_url:
            # The node is the development chain: no archive, and turbobt signs and submits as on a real one.
            return TurbobtChainClient(
                settings.devchain.node_url,
                archive_network=None,
                call_timeout=settings.chain.call_timeout,
                extrinsic_timeout=settings.chain.extrinsic_timeout,
            )
        from app.devchain.client import SimulatedChainClient

        return SimulatedChainClient.from_settings(settings)
    return TurbobtChainClient.from_settings(settings.chain)


def block_time(settings: Settings) -> float:
    return settings.devchain.block_time if settings.chain.network == "local" else CHAIN_BLOCK_TIME


def build_metagraph_cache(settings: Settings, client: ChainClient) -> MetagraphCache:
    chain = settings.chain
    netuids = {chain.netuid, *settings.devchain.netuids} if chain.network == "local" else {chain.netuid}
    return MetagraphCache(
        client,
        netuids=netuids,
        lru_size=chain.metagraph_cache_blocks,
        # Three missed blocks (at least two seconds, so a busy test machine is not "stale").
        stale_after=max(3 * block_time(settings), 2.0),
        call_timeout=chain.call_timeout,
    )


@asynccontextmanager
async def chain_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Start the chain client and the metagraph watcher; stop both at shutdown."""
    settings = app.state.settings
    client: ChainClient = app.state.get("chain") or build_chain_client(settings)
    client.start()
    cache = build_metagraph_cache(settings, client)
    cache.start()
    app.state.chain = client
    app.state.metagraph = cache
    # Epistula signers are checked against the metagraph unless PYLON_EPISTULA_HOTKEYS pins a static list.
    if not settings.epistula.hotkeys:
        app.state.hotkey_directory = MetagraphHotkeyDirectory(cache)
    ready_checks(app.state)["chain"] = cache.ready_check
    log.info("chain_started", network=settings.chain.network, netuids=sorted(cache.watched))
    try:
        yield
    finally:
        await cache.close()
        await client.close()
