"""The per-block metagraph cache and the head watcher that keeps it warm.

A watcher task follows new heads (the client's subscription, or polling) and, for every served netuid,
fetches the neurons once per block, encodes them once, and keeps the result as ready-to-send JSON bytes
with an ETag. Requests for the latest metagraph read that object and never wait on the chain once warm;
only the first request for a netuid may (and concurrent first requests share one fetch). Metagraphs at
older blocks sit in a bounded LRU.

When the chain is unreachable the last metagraph keeps being served; `stale` says so and `/ready`
reports the chain as degraded with the head's age.

Other features use `latest(netuid)` and `lookup(netuid, hotkey)` (a dict lookup on the warm metagraph:
uid, validator permit and stake for the Epistula guard and the weights worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter, Gauge

from app.auth.epistula import HotkeyInfo as EpistulaHotkeyInfo
from app.chain.client import (
    BlockInfo,
    ChainClient,
    ChainError,
    Metagraph,
    Neuron,
    SubnetHyperparams,
    UnknownNetuid,
)
from app.health import CheckResult
from app.single_flight import SingleFlight

log = structlog.get_logger(__name__)

CACHE_REQUESTS = Counter(
    "pylon_metagraph_cache_requests_total",
    "Metagraph reads by outcome: hit (served from memory), miss (fetched from the chain), stale.",
    ("kind", "result"),
)
HEAD_AGE = Gauge(
    "pylon_chain_head_age_seconds",
    "Seconds since the watcher last saw a new chain head.",
    multiprocess_mode="min",
)
_HIT = CACHE_REQUESTS.labels("latest", "hit")
_STALE = CACHE_REQUESTS.labels("latest", "stale")
HEAD_BLOCK = Gauge("pylon_chain_head_block", "Number of the latest chain head seen.", multiprocess_mode="max")

# A netuid is watched once it is asked for; bounded so that random netuids cannot grow the work per block.
MAX_WATCHED_NETUIDS = 64
_ENCODER = msgspec.json.Encoder()


class CachedMetagraph:
    """One subnet's neurons at one block, encoded once: the JSON bytes and their ETag."""

    __slots__ = ("block", "body", "etag", "fetched_at", "metagraph", "netuid")

    def __init__(self, netuid: int, metagraph: Metagraph) -> None:
        self.netuid = netuid
        self.metagraph = metagraph
        self.block = metagraph.block
        self.body = _ENCODER.encode(metagraph)
        # The content is a function of (netuid, block hash): every worker computes the same ETag.
        self.etag = f'"sn{netuid}-{metagraph.block.number}-{metagraph.block.hash[2:18]}"'
        self.fetched_at = time.monotonic()

    @property
    def neurons(self) -> dict[str, Neuron]:
        return self.metagraph.neurons


class HotkeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What an auth guard or the weights worker needs about a hotkey at the latest block."""

    uid: int
    registered: bool
    validator_permit: bool
    stake: float
    block: int


class MetagraphCache:
    """Latest metagraph per served netuid (kept warm per block) plus an LRU of older blocks."""

    def __init__(
        self,
        client: ChainClient,
        *,
        netuids: Iterable[int] = (),
        lru_size: int = 64,
        stale_after: float = 36.0,
        call_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.client = client
        self.lru_size = lru_size
        self.stale_after = stale_after
        self.call_timeout = call_timeout
        self.backoff = backoff
        self.watched: set[int] = set(netuids)
        self.head: BlockInfo | None = None
        self.head_seen_at: float | None = None
        self.last_error: str | None = None
        self._latest: dict[int, CachedMetagraph] = {}
        self._older: OrderedDict[tuple[int, int], CachedMetagraph] = OrderedDict()
        self._hyperparams: dict[int, tuple[BlockInfo, SubnetHyperparams]] = {}
        self._flights: SingleFlight[Any] = SingleFlight()
        self._tasks: list[asyncio.Task[None]] = []
        self._new_head = asyncio.Event()
        # The highest head whose metagraphs have been refreshed (self.head is set before the refresh).
        self._processed = -1
        self._hits = 0
        self._stale_hits = 0

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._watch(), name="metagraph-watcher"),
                loop.create_task(self._tick(), name="metagraph-head-age"),
            ]

    async def close(self) -> None:
        self.flush_counts()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self) -> None:
        delay = self.backoff[0]
        while True:
            try:
                async for head in self.client.subscribe_heads():
                    await self._on_head(head)
                    delay = self.backoff[0]
                # A subscription that simply ends is treated as a drop.
                raise ChainError("head subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("chain_head_watch_failed", error=self.last_error, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _tick(self) -> None:
        while True:
            age = self.head_age()
            if age is not None:
                HEAD_AGE.set(age)
            self.flush_counts()
            await asyncio.sleep(1.0)

    async def _on_head(self, head: BlockInfo) -> None:
        if self.head is not None and head.number <= self.head.number:
            return
        self.head = head
        self.head_seen_at = time.monotonic()
        HEAD_BLOCK.set(head.number)
        HEAD_AGE.set(0)
        results = await asyncio.gather(
            *(self._fetch_latest(netuid, head) for netuid in sorted(self.watched)), return_exceptions=True
        )
        # An unknown netuid is the asker's mistake (it is unwatched again), not a chain problem.
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, UnknownNetuid)]
        self.last_error = f"{type(errors[0]).__name__}: {errors[0]}" if errors else None
        for error in errors:
            log.warning("metagraph_refresh_failed", block=head.number, error=str(error))
        self._processed = max(self._processed, head.number)
        self._new_head.set()
        self._new_head = asyncio.Event()

    # ---------------------------------------------------------------------------------------- state
    def head_age(self) -> float | None:
        return None if self.head_seen_at is None else time.monotonic() - self.head_seen_at

    def is_stale(self) -> bool:
        age = self.head_age()
        return age is None or age > self.stale_after

    async def ready_check(self) -> CheckResult:
        """`/ready`'s chain entry: ok while heads arrive, degraded (serving cache) when they stopped."""
        age = self.head_age()
        data: dict[str, Any] = {"head_age_seconds": None if age is None else round(age, 3)}
        if self.head is not None:
            data["head"] = self.head.number
        if self.last_error:
            data["error"] = self.last_error
        if age is None:
            return CheckResult(status="down", detail="no chain head seen yet", data=data)
        if age > self.stale_after or self.last_error:
            return CheckResult(
                status="degraded", detail="serving cached metagraphs; chain head is old", data=data
            )
        return CheckResult(status="ok", data=data)

    # ---------------------------------------------------------------------------------------- reads
    async def _single_flight(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        # Bounded: a caller waits for a fetch that several chain calls make, each within call_timeout.
        return await self._flights.run(key, lambda: asyncio.wait_for(make(), self.call_timeout * 3))

    async def _fetch(self, netuid: int, block: BlockInfo) -> CachedMetagraph:
        async def make() -> CachedMetagraph:
            neurons = await self.client.neurons(netuid, block)
            metagraph = Metagraph(block=block, neurons={n.hotkey: n for n in neurons})
            return CachedMetagraph(netuid, metagraph)

        result: CachedMetagraph = await self._single_flight(("neurons", netuid, block.number), make)
        return result

    async def _fetch_latest(self, netuid: int, head: BlockInfo) -> CachedMetagraph:
        current = self._latest.get(netuid)
        if current is not None and current.block.number >= head.number:
            return current
        try:
            fresh = await self._fetch(netuid, head)
        except UnknownNetuid:
            self.watched.discard(netuid)
            self._latest.pop(netuid, None)
            raise
        current = self._latest.get(netuid)
        if current is None or fresh.block.number > current.block.number:
            if current is not None:
                self._remember(current)
            self._latest[netuid] = fresh
        return self._latest[netuid]

    def _remember(self, cached: CachedMetagraph) -> None:
        key = (cached.netuid, cached.block.number)
        self._older[key] = cached
        self._older.move_to_end(key)
        while len(self._older) > self.lru_size:
            self._older.popitem(last=False)

    def count_hit(self) -> None:
        # A plain int per request; `_tick` moves it into Prometheus once a second (an inc() in
        # multiprocess mode writes an mmap'd file, which the hot path should not pay for).
        if self.is_stale():
            self._stale_hits += 1
        else:
            self._hits += 1

    def flush_counts(self) -> None:
        hits, stale, self._hits, self._stale_hits = self._hits, self._stale_hits, 0, 0
        if hits:
            _HIT.inc(hits)
        if stale:
            _STALE.inc(stale)

    def peek(self, netuid: int) -> CachedMetagraph | None:
        """The latest cached metagraph without touching the chain (None while cold)."""
        return self._latest.get(netuid)

    async def latest(self, netuid: int) -> CachedMetagraph:
        """The latest metagraph: from memory once warm; the first call for a netuid fetches at the head.

        Raises UnknownNetuid, or a ChainError when cold and the chain is unreachable.
        """
        cached = self._latest.get(netuid)
        if cached is not None:
            self.count_hit()
            return cached
        CACHE_REQUESTS.labels("latest", "miss").inc()
        if len(self.watched) < MAX_WATCHED_NETUIDS:
            self.watched.add(netuid)
        if self.head is None:
            head = await asyncio.wait_for(self.client.head(), self.call_timeout)
            if self.head is None:
                await self._on_head(head)
        assert self.head is not None
        return await self._fetch_latest(netuid, self.head)

    async def at_block(self, netuid: int, number: int) -> CachedMetagraph:
        """The metagraph at a block number; BlockNotFound for a future or pruned block."""
        cached = self._latest.get(netuid)
        if cached is not None and cached.block.number == number:
            CACHE_REQUESTS.labels("block", "hit").inc()
            return cached
        older = self._older.get((netuid, number))
        if older is not None:
            self._older.move_to_end((netuid, number))
            CACHE_REQUESTS.labels("block", "hit").inc()
            return older
        CACHE_REQUESTS.labels("block", "miss").inc()
        block = await asyncio.wait_for(self.client.block(number), self.call_timeout)
        fetched = await self._fetch(netuid, block)
        self._remember(fetched)
        return fetched

    async def hyperparams(self, netuid: int) -> tuple[BlockInfo, SubnetHyperparams]:
        """Hyperparameters at the latest head, fetched at most once per block."""
        head = self.head
        if head is None:
            head = await asyncio.wait_for(self.client.head(), self.call_timeout)
        cached = self._hyperparams.get(netuid)
        if cached is not None and (cached[0].number >= head.number or self.is_stale()):
            return cached

        async def make() -> tuple[BlockInfo, SubnetHyperparams]:
            return head, await self.client.hyperparams(netuid, head)

        try:
            result: tuple[BlockInfo, SubnetHyperparams] = await self._single_flight(
                ("hyperparams", netuid, head.number), make
            )
        except ChainError:
            if cached is not None:
                return cached
            raise
        self._hyperparams[netuid] = result
        return result

    def lookup(self, netuid: int, hotkey: str) -> HotkeyInfo | None:
        """A hotkey's uid, permit and stake at the latest cached block; None if unknown or cold."""
        cached = self._latest.get(netuid)
        if cached is None:
            return None
        neuron = cached.metagraph.neurons.get(hotkey)
        if neuron is None:
            return None
        return HotkeyInfo(
            uid=neuron.uid,
            registered=True,
            validator_permit=neuron.validator_permit,
            stake=neuron.stake,
            block=cached.block.number,
        )

    async def wait_for_head(self, after: int) -> BlockInfo:
        """Wait until the watcher has processed a head above `after` (callers bound it with a timeout)."""
        while self.head is None or self._processed <= after:
            await self._new_head.wait()
        assert self.head is not None
        return self.head


class MetagraphHotkeyDirectory:
    """Epistula's view of signers, read from the latest cached metagraph (no chain call once warm)."""

    def __init__(self, cache: MetagraphCache) -> None:
        self._cache = cache

    async def lookup(self, netuid: int, hotkey: str) -> EpistulaHotkeyInfo | None:
        info = self._cache.lookup(netuid, hotkey)
        if info is None:
            try:
                # Warms a cold netuid (the first signed request may wait on the chain; later ones never do).
                await self._cache.latest(netuid)
            except ChainError:
                return None
            info = self._cache.lookup(netuid, hotkey)
        if info is None:
            return None
        return EpistulaHotkeyInfo(registered=True, validator_permit=info.validator_permit, stake=info.stake)
