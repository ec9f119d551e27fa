"""The gateway of one worker: miner records, the subnet backends it builds, miners' views, scores → weights.

`gateway_lifespan` (app/gateway/controller.py) puts it on `app.state.gateway` before the inference
lifespan, whose `build_backends` asks it for each `subnet` backend and hands it the built list so a
subnet backend finds its `reference` by name. Services take plain values; the controller maps the errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from app.gateway.networks import AllowedNetworks
from app.gateway.records import MinerRecords, stored_views
from app.gateway.schemas import FromScoresResponse, MinerList, MinerView
from app.gateway.scoring import Scorer, load_scorer
from app.gateway.transport import EpistulaTransport
from app.settings import DEFAULT_IDENTITY, BackendSettings, Settings, SettingsError
from app.weights.service import epoch_end

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.chain.metagraph import MetagraphCache
    from app.gateway.backend import SubnetBackend
    from app.inference.backends.base import Backend
    from app.inference.upstream import UpstreamPool
    from app.weights.identities import Identity
    from app.weights.service import WeightsService

log = structlog.get_logger(__name__)


class NoScores(LookupError):
    """No miner of the subnet has a score yet (nothing to turn into weights)."""


def weights_from_views(views: Sequence[MinerView], min_requests: int = 1) -> dict[str, float]:
    """Scores as weights: every scored miner with at least `min_requests` answers, weight = its score."""
    weights = {
        view.hotkey: view.score
        for view in views
        if view.score is not None and view.score > 0 and view.requests >= min_requests
    }
    if not weights:
        raise NoScores("no miner has a score above 0 yet: send requests through the subnet backend first")
    return weights


class GatewayRuntime:
    """What the gateway shares in a worker across its subnet backends."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine | None,
        metagraph: MetagraphCache,
        identities: Mapping[str, Identity],
        weights: WeightsService | None,
        scorer: Scorer | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metagraph = metagraph
        self.identities = dict(identities)
        self.weights = weights
        gateway = settings.gateway
        self.allowed = AllowedNetworks.for_network(settings.chain.network, gateway.allowed_networks)
        self.scorer = scorer or load_scorer(gateway)
        self.records = MinerRecords(engine, alpha=gateway.score_alpha, flush_interval=gateway.flush_interval)
        self.backends: dict[int, SubnetBackend] = {}
        self._auto: asyncio.Task[None] | None = None

    def netuid_of(self, config: BackendSettings) -> int:
        return config.netuid if config.netuid is not None else self.settings.chain.netuid

    # ---------------------------------------------------------------------------- building backends
    def subnet_backend(self, config: BackendSettings, pool: UpstreamPool) -> Backend:
        """The backend for one `subnet` entry of PYLON_BACKENDS (called by the inference lifespan)."""
        from app.gateway.backend import SubnetBackend

        identity = self.identities.get(config.identity)
        if identity is None:
            hint = (
                "set PYLON_WALLET_NAME"
                if config.identity == DEFAULT_IDENTITY
                else "list it in PYLON_IDENTITIES"
            )
            raise SettingsError(
                f"PYLON_BACKENDS: subnet backend {config.name!r}: identity {config.identity!r} "
                f"has no wallet ({hint})"
            )
        netuid = self.netuid_of(config)
        transport = EpistulaTransport(
            pool,
            identity.keypair,
            self.allowed,
            path_prefix=config.path_prefix,
            connect_timeout=config.connect_timeout,
        )
        backend = SubnetBackend(
            config,
            netuid=netuid,
            own_hotkey=identity.hotkey_ss58,
            transport=transport,
            records=self.records,
            metagraph=self.metagraph,
            scorer=self.scorer,
            gateway=self.settings.gateway,
            allowed=self.allowed,
        )
        self.backends[netuid] = backend
        return backend

    def attach(self, backends: Sequence[Backend]) -> None:
        """Give each subnet backend its reference backend, by name."""
        by_name = {backend.name: backend for backend in backends}
        for subnet in self.backends.values():
            if subnet.config.reference:
                subnet.reference = by_name.get(subnet.config.reference)

    # ------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        netuids = {self.netuid_of(c) for c in self.settings.inference.backends if c.kind == "subnet"}
        await self.records.start(netuids)
        if self.settings.gateway.auto_weights and netuids and self.weights is not None:
            self._auto = asyncio.create_task(self._auto_weights(), name="pylon-gateway-auto-weights")

    async def close(self) -> None:
        if self._auto is not None:
            self._auto.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto
        await self.records.close()

    # ---------------------------------------------------------------------------------------- reads
    async def miners(self, netuid: int) -> MinerList:
        """A subnet's miner records (this worker's view: stored rows plus its unflushed observations)."""
        backend = self.backends.get(netuid)
        cached = self.metagraph.peek(netuid)
        if backend is None:
            views = await stored_views(self.engine, netuid) if self.engine is not None else []
            routable: list[str] = []
        else:
            views = self.records.views(netuid)
            routable = sorted(miner.hotkey for miner in backend.miners())
        return MinerList(
            netuid=netuid,
            block=cached.block.number if cached is not None else None,
            miners=views,
            routable=routable,
        )

    # -------------------------------------------------------------------------------------- weights
    def identity_for(self, netuid: int) -> str:
        backend = self.backends.get(netuid)
        return backend.config.identity if backend is not None else DEFAULT_IDENTITY

    async def weights_from_scores(
        self, netuid: int, identity: str | None = None, min_requests: int = 1
    ) -> FromScoresResponse:
        """A weights job from the current scores (through the durable weights service).

        Raises NoScores, and what `WeightsService.submit` raises (JobNotFound, WeightsValidationError,
        UnknownNetuid).
        """
        if self.weights is None:
            raise NoScores("the weights service is not running in this process")
        views = (await self.miners(netuid)).miners
        weights = weights_from_views(views, min_requests)
        name = identity or self.identity_for(netuid)
        job = await self.weights.submit(name, netuid, weights)
        return FromScoresResponse(
            job_id=job.job_id, status=job.status, netuid=netuid, identity=job.identity, weights=weights
        )

    async def _auto_weights(self) -> None:
        """Once per epoch per subnet backend: scores → a weights job. Several workers each submit one; the
        weights service keeps the newest (the others become `superseded`)."""
        done: dict[int, int] = {}
        while True:
            try:
                head = self.metagraph.head
                await asyncio.wait_for(self.metagraph.wait_for_head(head.number if head else -1), 60)
                head = self.metagraph.head
                if head is None:
                    continue
                for netuid, backend in self.backends.items():
                    _, hyper = await self.metagraph.hyperparams(netuid)
                    end = epoch_end(head.number, netuid, hyper.tempo)
                    if done.get(netuid) == end:
                        continue
                    if netuid not in done:
                        # Not at start: the first epoch seen is only partly scored.
                        done[netuid] = end
                        continue
                    done[netuid] = end
                    with contextlib.suppress(NoScores):
                        job = await self.weights_from_scores(netuid, backend.config.identity)
                        log.info(
                            "gateway_auto_weights", netuid=netuid, job_id=job.job_id, count=len(job.weights)
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway_auto_weights_failed", error=str(exc))
                await asyncio.sleep(5)
