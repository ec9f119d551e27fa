"""The `subnet` backend kind: a subnet's miners behind the inference router, like any model server.

Non-streamed requests go to `fanout` miners at once (app/gateway/selection.py). The answer returned is
the best-ranked miner's (running score) among those that answered validly: the gateway returns as soon as
that miner has answered and every better-ranked one has failed, without waiting for worse-ranked ones.
The reference backend is asked at the same moment as the miners, and every answer is scored in the
background once it and the reference are in, so the caller never waits for the reference (the choice:
this request's answer is picked by the miners' scores so far; its own score counts from the next
request on).

Streams go to the best-ranked miner alone, hedged: if no first chunk came within the hedge delay (the
miner's p90 time to first chunk, or `hedge_delay`), the next-best starts too; the first to produce a
chunk is streamed and the others are cancelled. The streamed text is scored against the reference when
the stream ends.

A miner that errors, answers non-200 or garbage, or times out (`request_timeout` per miner,
`total_timeout` for the fan-out) scores 0; when every chosen miner failed the router answers 503 in
OpenAI's format (`BackendFailure` without a cool-down: the next request tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from app.gateway import metrics
from app.gateway.answers import InvalidAnswer, parse_answer, parse_vectors, reference_of, stream_text
from app.gateway.records import MinerRecords, MinerStats
from app.gateway.scoring import Answer, Reference, Scorer
from app.gateway.selection import Miner, choose, eligible_miners
from app.gateway.transport import MinerRefused, MinerResponse, MinerTransport, MinerUnreachable
from app.inference.backends.base import (
    Backend,
    BackendFailure,
    Endpoint,
    UpstreamClientError,
    UpstreamReply,
    UpstreamStream,
)
from app.inference.backends.openai_compatible import SSEStream, with_usage_requested
from app.metrics_buffer import BUFFER
from app.settings import BackendSettings, GatewaySettings

if TYPE_CHECKING:
    from app.chain.metagraph import MetagraphCache

log = structlog.get_logger(__name__)

PATHS: dict[Endpoint, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
# Hedge delay bounds: never hedge at once (a burst of duplicates), never wait longer than a miner may take.
MIN_HEDGE_DELAY = 0.05
DEFAULT_HEDGE_DELAY = 0.5
# Background scoring tasks kept at once; beyond it new answers are not scored (the caller is served anyway).
MAX_SCORING_TASKS = 1024
_dict_decoder = msgspec.json.Decoder(dict)
_encoder = msgspec.json.Encoder()


class _Outcome(msgspec.Struct, kw_only=True):
    """One miner's answer to one request."""

    miner: Miner
    outcome: str  # ok, invalid, error, timeout, refused
    latency: float
    body: bytes = b""
    text: str = ""
    vector: list[float] | None = None
    usage: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _Started(msgspec.Struct, kw_only=True):
    """A miner's stream that produced its first event."""

    miner: Miner
    stream: SSEStream
    events: Any
    first: bytes | None
    ttfc: float


class SubnetBackend(Backend):
    """Miners of `netuid`, signed by the identity's hotkey, scored against the `reference` backend."""

    def __init__(
        self,
        config: BackendSettings,
        *,
        netuid: int,
        own_hotkey: str | None,
        transport: MinerTransport,
        records: MinerRecords,
        metagraph: MetagraphCache,
        scorer: Scorer,
        gateway: GatewaySettings,
        allowed: Any,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(config)
        self.subnet = netuid
        self.netuid_label = str(netuid)
        self.own_hotkey = own_hotkey
        self.transport = transport
        self.records = records
        self.metagraph = metagraph
        self.scorer = scorer
        self.gateway = gateway
        self.allowed = allowed
        self.rng = rng or random.Random()
        self.reference: Backend | None = None
        # Whether the reference answers /v1/embeddings (None: not tried yet).
        self.reference_embeds: bool | None = None
        self._miners: tuple[int, list[Miner]] = (-1, [])
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------------- lifecycle
    def netuid(self) -> int | None:
        return self.subnet

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def list_models(self) -> list[str]:
        # Always up: whether miners answer is decided per request (a probe must not cool the subnet down).
        return list(self.config.models)

    # --------------------------------------------------------------------------------------- miners
    def miners(self) -> list[Miner]:
        """Eligible miners at the latest cached block (recomputed once per block)."""
        cached = self.metagraph.peek(self.subnet)
        if cached is None:
            return []
        block = cached.block.number
        if self._miners[0] != block:
            miners = eligible_miners(
                cached.neurons.values(),
                self.allowed,
                own_hotkey=self.own_hotkey,
                require_no_permit=self.config.require_no_permit,
            )
            self._miners = (block, miners)
        return self._miners[1]

    async def _candidates(self, count: int) -> list[Miner]:
        if self.metagraph.peek(self.subnet) is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.metagraph.latest(self.subnet), self.config.connect_timeout)
        miners = self.miners()
        if not miners:
            raise BackendFailure(
                f"no miner of subnet {self.subnet} serves an axon at an allowed address", cool_down=False
            )
        return choose(
            self.subnet, miners, self.records, count, exploration=self.gateway.exploration, rng=self.rng
        )

    def _stats(self, miner: Miner) -> MinerStats:
        stats = self.records.get(self.subnet, miner.hotkey)
        stats.uid = miner.uid
        return stats

    def _body(self, raw: bytes, stream: bool = False) -> bytes:
        """The caller's body with the miners' model name (and, for streams, usage asked for)."""
        model = self.config.upstream_model
        if model:
            body = _dict_decoder.decode(raw)
            body["model"] = model
            raw = _encoder.encode(body)
        return with_usage_requested(raw) if stream else raw

    # ------------------------------------------------------------------------------ one miner's call
    async def _call(self, miner: Miner, endpoint: Endpoint, body: bytes) -> _Outcome:
        started = time.perf_counter()
        try:
            response = await self.transport.request(
                miner, PATHS[endpoint], body, read_timeout=self.config.request_timeout
            )
        except MinerRefused as exc:
            return _Outcome(miner=miner, outcome="refused", latency=0.0, error=str(exc))
        except MinerUnreachable as exc:
            outcome = "timeout" if "timed out" in str(exc) else "error"
            return _Outcome(
                miner=miner, outcome=outcome, latency=time.perf_counter() - started, error=str(exc)
            )
        latency = time.perf_counter() - started
        if response.status != 200:
            return _Outcome(
                miner=miner, outcome="error", latency=latency, error=f"answered {response.status}"
            )
        try:
            parsed = parse_answer(endpoint, response.body)
        except InvalidAnswer as exc:
            return _Outcome(miner=miner, outcome="invalid", latency=latency, error=str(exc))
        return _Outcome(
            miner=miner,
            outcome="ok",
            latency=latency,
            body=response.body,
            text=parsed.text,
            vector=parsed.vector,
            usage=parsed.usage,
        )

    # ---------------------------------------------------------------------------------- non-streamed
    async def complete(self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct) -> UpstreamReply:
        chosen = await self._candidates(self.config.fanout)
        body = self._body(raw)
        reference = self._ask_reference(endpoint, body, request)
        calls = [asyncio.create_task(self._call(miner, endpoint, body)) for miner in chosen]
        deadline = time.monotonic() + self.config.total_timeout
        try:
            # Best-ranked first: wait for each in turn, but they all run at once.
            for task in calls:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait([task], timeout=remaining)
                if not done:
                    break
                outcome = task.result()
                if outcome.ok:
                    return UpstreamReply(status=200, body=outcome.body, usage=outcome.usage)
        finally:
            self._score_later(endpoint, calls, reference)
        failures = [task.result() for task in calls if task.done()]
        reasons = "; ".join(f"uid {o.miner.uid}: {o.outcome} {o.error}".strip() for o in failures)
        raise BackendFailure(
            f"no miner of subnet {self.subnet} answered ({reasons or 'timed out'})", cool_down=False
        )

    # --------------------------------------------------------------------------------------- streams
    async def open_stream(
        self, endpoint: Endpoint, raw: bytes, request: msgspec.Struct, include_usage: bool
    ) -> UpstreamStream:
        chosen = await self._candidates(self.config.fanout)
        body = self._body(raw, stream=True)
        reference = self._ask_reference(endpoint, self._body(_not_streamed(raw)), request)
        queue = list(chosen)
        pending: dict[asyncio.Task[_Started | _Outcome], Miner] = {}
        deadline = time.monotonic() + self.config.total_timeout
        started_at = time.perf_counter()
        failures: list[_Outcome] = []
        winner: _Started | None = None

        def start_next() -> float:
            miner = queue.pop(0)
            task = asyncio.create_task(self._first_event(miner, endpoint, body, include_usage))
            pending[task] = miner
            return self._hedge_delay(miner)

        try:
            delay = start_next()
            while pending:
                timeout = min(delay, deadline - time.monotonic()) if queue else deadline - time.monotonic()
                if timeout <= 0 and not queue:
                    break
                done, _ = await asyncio.wait(
                    pending, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    pending.pop(task)
                    result = task.result()
                    if isinstance(result, _Started) and winner is None:
                        winner = result
                    elif isinstance(result, _Started):
                        await result.stream.aclose()
                    else:
                        failures.append(result)
                if winner is not None:
                    break
                if queue and (not done or not pending):
                    # Hedge: the slow one keeps running; a failed one is replaced at once.
                    delay = start_next()
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    result = await task
                    if isinstance(result, _Started):
                        await result.stream.aclose()
                BUFFER.inc(metrics.MINER_REQUESTS.labels(self.netuid_label, "cancelled"))
        for failure in failures:
            self._score_later(endpoint, [_done(failure)], None)
        if winner is None:
            reference.cancel()
            reasons = "; ".join(f"uid {o.miner.uid}: {o.outcome} {o.error}".strip() for o in failures)
            raise BackendFailure(
                f"no miner of subnet {self.subnet} streamed ({reasons or 'timed out'})", cool_down=False
            )
        self._stats(winner.miner).ttfc.append(winner.ttfc)
        BUFFER.observe(metrics.MINER_LATENCY.labels(self.netuid_label), winner.ttfc)
        return MinerStream(self, endpoint, winner, reference, started_at)

    def _hedge_delay(self, miner: Miner) -> float:
        if self.config.hedge_delay is not None:
            return self.config.hedge_delay
        stats = self.records.peek(self.subnet, miner.hotkey)
        p90 = stats.ttfc_p90() if stats is not None else None
        delay = DEFAULT_HEDGE_DELAY if p90 is None else p90
        return max(MIN_HEDGE_DELAY, min(delay, self.config.request_timeout))

    async def _first_event(
        self, miner: Miner, endpoint: Endpoint, body: bytes, include_usage: bool
    ) -> _Started | _Outcome:
        started = time.perf_counter()
        response: MinerResponse | None = None
        try:
            response = await self.transport.request(
                miner, PATHS[endpoint], body, read_timeout=self.config.request_timeout, stream=True
            )
            if response.status != 200:
                with contextlib.suppress(MinerUnreachable, Exception):
                    await response.read()
                response.close()
                return _Outcome(
                    miner=miner,
                    outcome="error",
                    latency=time.perf_counter() - started,
                    error=f"answered {response.status}",
                )
            stream = SSEStream(response, include_usage)  # type: ignore[arg-type]
            events = aiter(stream)
            try:
                first: bytes | None = await anext(events)
            except StopAsyncIteration:
                first = None
            return _Started(
                miner=miner, stream=stream, events=events, first=first, ttfc=time.perf_counter() - started
            )
        except MinerRefused as exc:
            return _Outcome(miner=miner, outcome="refused", latency=0.0, error=str(exc))
        except (MinerUnreachable, BackendFailure) as exc:
            if response is not None:
                response.close()
            outcome = "timeout" if "timed out" in str(exc) else "error"
            return _Outcome(
                miner=miner, outcome=outcome, latency=time.perf_counter() - started, error=str(exc)
            )
        except BaseException:
            if response is not None:
                response.close()
            raise

    # ------------------------------------------------------------------------------------- reference
    def _ask_reference(
        self, endpoint: Endpoint, body: bytes, request: msgspec.Struct
    ) -> asyncio.Task[Reference | None]:
        return asyncio.create_task(self._reference_answer(endpoint, body, request))

    async def _reference_answer(
        self, endpoint: Endpoint, body: bytes, request: msgspec.Struct
    ) -> Reference | None:
        if self.reference is None:
            return None
        try:
            reply = await asyncio.wait_for(
                self.reference.complete(endpoint, body, request), self.config.total_timeout
            )
            if reply.status != 200:
                return None
            return reference_of(endpoint, reply.body)
        except (BackendFailure, UpstreamClientError, InvalidAnswer, TimeoutError) as exc:
            log.warning("gateway_reference_failed", backend=self.reference.name, error=str(exc))
            return None

    async def embed(self, texts: list[str]) -> list[list[float]] | None:
        """Vectors for `texts` from the reference's /v1/embeddings; None if it has none (remembered)."""
        if self.reference is None or self.reference_embeds is False:
            return None
        model = self.config.upstream_model or self.config.models[0]
        body = _encoder.encode({"model": model, "input": texts})
        try:
            reply = await self.reference.complete("embeddings", body, None)  # type: ignore[arg-type]
            vectors = parse_vectors(reply.body) if reply.status == 200 else None
        except UpstreamClientError:
            vectors = None
        except (BackendFailure, msgspec.DecodeError, ValueError) as exc:
            log.warning("gateway_reference_embeddings_failed", error=str(exc))
            return None
        if vectors is None or len(vectors) != len(texts):
            if self.reference_embeds is None:
                log.info("gateway_reference_has_no_embeddings", backend=self.reference.name)
            self.reference_embeds = False
            return None
        self.reference_embeds = True
        return vectors

    # --------------------------------------------------------------------------------------- scoring
    def _score_later(
        self,
        endpoint: Endpoint,
        calls: Sequence[asyncio.Task[_Outcome]],
        reference: asyncio.Task[Reference | None] | None,
    ) -> None:
        if len(self._tasks) >= MAX_SCORING_TASKS:
            for call in calls:
                call.cancel()
            log.warning("gateway_scoring_backlog_full", netuid=self.subnet)
            return
        task = asyncio.create_task(self._score(endpoint, list(calls), reference))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(
        self,
        endpoint: Endpoint,
        calls: list[asyncio.Task[_Outcome]],
        reference: asyncio.Task[Reference | None] | None,
    ) -> None:
        try:
            outcomes = list(await asyncio.gather(*calls))
            ref = await reference if reference is not None else None
            if reference is not None and self.reference is not None and ref is None:
                # The reference failed this time: count the answers, score nothing (validity alone would
                # lift wrong miners).
                self._record(outcomes, None)
                return
            answers = [
                Answer(
                    hotkey=o.miner.hotkey,
                    ok=o.ok,
                    latency=o.latency,
                    text=o.text,
                    vector=o.vector,
                    error=o.error,
                )
                for o in outcomes
                if o.outcome != "refused"
            ]
            scores = await self.scorer.score(endpoint, answers, ref, self.embed) if answers else []
            self._record([o for o in outcomes if o.outcome != "refused"], scores)
            for o in outcomes:
                if o.outcome == "refused":
                    BUFFER.inc(metrics.MINER_REQUESTS.labels(self.netuid_label, "refused"))
        except asyncio.CancelledError:
            for call in calls:
                call.cancel()
            raise
        except Exception:
            log.exception("gateway_scoring_failed", netuid=self.subnet)

    def _record(self, outcomes: Sequence[_Outcome], scores: Sequence[float] | None) -> None:
        for index, o in enumerate(outcomes):
            # Without this request's scores (the reference failed) a failure still scores 0.
            score = scores[index] if scores is not None else (None if o.ok else 0.0)
            self.records.record(self._stats(o.miner), ok=o.ok, score=score, latency=o.latency)
            BUFFER.inc(metrics.MINER_REQUESTS.labels(self.netuid_label, o.outcome))
            if o.ok:
                BUFFER.observe(metrics.MINER_LATENCY.labels(self.netuid_label), o.latency)
            if score is not None:
                BUFFER.observe(metrics.MINER_SCORE.labels(self.netuid_label), score)

    def score_stream(
        self, endpoint: Endpoint, outcome: _Outcome, reference: asyncio.Task[Reference | None]
    ) -> None:
        self._score_later(endpoint, [_done(outcome)], reference)


class MinerStream(UpstreamStream):
    """The winning miner's stream, its events kept for scoring once it ends."""

    def __init__(
        self,
        backend: SubnetBackend,
        endpoint: Endpoint,
        started: _Started,
        reference: asyncio.Task[Reference | None],
        started_at: float,
    ) -> None:
        self.backend = backend
        self.endpoint = endpoint
        self.started = started
        self.reference = reference
        self.started_at = started_at
        self.events_seen: list[bytes] = []
        self.finished = False
        self.failed = ""
        self.closed = False
        self.usage = None
        self.chunks = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        stream = self.started.stream
        try:
            if self.started.first is not None:
                self.events_seen.append(self.started.first)
                yield self.started.first
                async for event in self.started.events:
                    self.events_seen.append(event)
                    self.usage, self.chunks = stream.usage, stream.chunks
                    yield event
            self.usage, self.chunks = stream.usage, stream.chunks
            self.finished = True
        except BackendFailure as exc:
            self.failed = exc.reason
            raise

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.started.stream.aclose()
        miner = self.started.miner
        latency = time.perf_counter() - self.started_at
        if self.finished:
            outcome = _Outcome(miner=miner, outcome="ok", latency=latency, text=stream_text(self.events_seen))
        elif self.failed:
            outcome = _Outcome(miner=miner, outcome="error", latency=latency, error=self.failed)
        else:
            # The caller left mid-stream: nothing to judge the miner by.
            self.reference.cancel()
            BUFFER.inc(metrics.MINER_REQUESTS.labels(self.backend.netuid_label, "cancelled"))
            return
        self.backend.score_stream(self.endpoint, outcome, self.reference)


def _done(outcome: _Outcome) -> asyncio.Task[_Outcome]:
    async def value() -> _Outcome:
        return outcome

    return asyncio.ensure_future(value())


def _not_streamed(raw: bytes) -> bytes:
    body = _dict_decoder.decode(raw)
    body["stream"] = False
    body.pop("stream_options", None)
    return _encoder.encode(body)
