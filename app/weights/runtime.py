"""Wiring weights into a Pylon process: identities, the service on `app.state.weights`, the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import structlog
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from app.chain.client import ChainClient
from app.chain.lifespan import build_chain_client
from app.settings import DEFAULT_IDENTITY, Settings
from app.weights.identities import Identity, load_identities
from app.weights.service import WeightsService
from app.weights.worker import WeightsWorker

log = structlog.get_logger(__name__)


@dataclass
class WeightsRuntime:
    service: WeightsService
    worker: WeightsWorker | None
    owned_chain: ChainClient | None


async def register_local_validators(chain: ChainClient, identities: dict[str, Identity]) -> None:
    """On a development chain, register every identity's hotkey as a validator with a permit, so a
    newcomer's first PUT lands. Real chains register nothing."""
    for identity in identities.values():
        uids = await chain.register_dev_validator(identity.hotkey_ss58, identity.netuids)
        for netuid, uid in uids.items():
            log.info("local_validator_registered", identity=identity.name, netuid=netuid, uid=uid)


async def start_weights(app: Litestar, engine: AsyncEngine) -> WeightsRuntime:
    settings: Settings = app.state.settings
    identities = load_identities(settings)
    # chain_lifespan (listed before this hook) provides the client; an app built without it gets its own.
    chain: ChainClient | None = app.state.get("chain")
    owned: ChainClient | None = None
    if chain is None:
        chain = owned = build_chain_client(settings)
        owned.start()
        app.state.chain = chain
    await register_local_validators(chain, identities)
    default = identities.get(DEFAULT_IDENTITY)
    if default is not None:
        # Pylon's own wallet: certificates/self signs with it (None: those routes answer 503).
        app.state.wallet = default.wallet
        # Epistula: callers sign for this hotkey unless PYLON_EPISTULA_HOTKEY names another.
        keys_runtime = app.state.get("keys_runtime")
        if keys_runtime is not None and keys_runtime.epistula.use_default_hotkey(default.hotkey_ss58):
            log.info("epistula_signed_for_default_identity", hotkey=default.hotkey_ss58)
    service = WeightsService(settings, engine, chain, identities, metagraph=app.state.get("metagraph"))
    app.state.weights = service
    worker = None
    if settings.weights.worker:
        worker = WeightsWorker(service)
        worker.start()
    log.info("weights_ready", identities=sorted(identities), worker=worker is not None)
    return WeightsRuntime(service=service, worker=worker, owned_chain=owned)


async def stop_weights(runtime: WeightsRuntime) -> None:
    if runtime.worker is not None:
        await runtime.worker.stop()
    if runtime.owned_chain is not None:
        await runtime.owned_chain.close()


def weights_lifespan(engine: AsyncEngine) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The lifespan hook for `create_app`: the weights service lives on `app.state.weights`."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = await start_weights(app, engine)
        try:
            yield
        finally:
            await stop_weights(runtime)

    return lifespan
