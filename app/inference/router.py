"""Model name → backend: least in-flight requests per unit of weight among healthy backends.

A backend that fails is put in a cool-down; the background health check (one task per worker) probes
every backend each `PYLON_BACKEND_HEALTH_INTERVAL` seconds, refreshes discovered models and brings a
cooled-down backend back once a probe succeeds after its cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import structlog

from app.health import CheckResult, CheckStatus
from app.inference.backends.base import Backend, BackendFailure
from app.inference.errors import InferenceError
from app.inference.metrics import BACKEND_UP
from app.inference.schemas import BackendStatus

log = structlog.get_logger(__name__)


class BackendState:
    """A backend and what this worker knows about it."""

    __slots__ = (
        "backend",
        "configured_models",
        "cooldown_until",
        "healthy",
        "in_flight",
        "last_error",
        "models",
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.configured_models = frozenset(backend.config.models)
        # Configured models are trusted until a probe answers; discovered ones arrive with the first probe.
        self.models: frozenset[str] = self.configured_models
        self.healthy = True
        self.in_flight = 0
        self.cooldown_until = 0.0
        self.last_error = ""

    @property
    def name(self) -> str:
        return self.backend.name

    def full(self) -> bool:
        """At its `max_in_flight` cap (0: never)."""
        cap = self.backend.config.max_in_flight
        return cap > 0 and self.in_flight >= cap

    def load(self) -> float:
        return self.in_flight / self.backend.config.weight

    def status(self, now: float | None = None) -> BackendStatus:
        now = time.monotonic() if now is None else now
        config = self.backend.config
        return BackendStatus(
            name=config.name,
            kind=config.kind,
            base_url=config.base_url,
            healthy=self.healthy,
            models=sorted(self.models),
            in_flight=self.in_flight,
            weight=config.weight,
            last_error=self.last_error,
            cooldown_remaining=round(max(0.0, self.cooldown_until - now), 2) if not self.healthy else 0.0,
        )


class BackendRouter:
    def __init__(self, backends: list[Backend], *, cooldown: float, health_interval: float) -> None:
        self.states = [BackendState(backend) for backend in backends]
        self.cooldown = cooldown
        self.health_interval = health_interval
        self._tiebreak = itertools.count()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        for state in self.states:
            await state.backend.start()
        # First probe before serving, so discovered models are known; bounded by the backends' timeouts.
        await self.probe_all()
        self._task = asyncio.create_task(self._health_loop(), name="pylon-backend-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for state in self.states:
            await state.backend.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.probe_all()
            except Exception:
                log.exception("backend_health_loop_failed")

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(state) for state in self.states))

    async def probe(self, state: BackendState) -> None:
        try:
            discovered = await state.backend.list_models()
        except BackendFailure as exc:
            if state.healthy:
                log.warning("backend_unhealthy", backend=state.name, reason=exc.reason, source="probe")
            self._mark_down(state, exc.reason)
            return
        # Configured models are served under their names even when the server lists them differently
        # (llama.cpp lists its file path); with none configured, whatever the server lists is served.
        state.models = state.configured_models or frozenset(discovered)
        if not state.healthy and time.monotonic() >= state.cooldown_until:
            state.healthy = True
            state.last_error = ""
            BACKEND_UP.labels(state.name).set(1)
            log.info("backend_recovered", backend=state.name)
        elif state.healthy:
            BACKEND_UP.labels(state.name).set(1)

    def _mark_down(self, state: BackendState, reason: str) -> None:
        state.healthy = False
        state.last_error = reason
        state.cooldown_until = time.monotonic() + self.cooldown
        BACKEND_UP.labels(state.name).set(0)

    # --- routing ---

    def models(self) -> list[str]:
        return sorted({model for state in self.states for model in state.models})

    def serves(self, model: str) -> bool:
        return any(model in state.models for state in self.states)

    def candidates(self, model: str) -> list[BackendState]:
        """Healthy backends for `model`, least loaded first; raises the 404 or 503 the client should see."""
        serving = [state for state in self.states if model in state.models]
        if not serving:
            raise InferenceError(
                404,
                f"The model '{model}' does not exist or is not served here",
                code="model_not_found",
                param="model",
            )
        healthy = [state for state in serving if state.healthy]
        if not healthy:
            now = time.monotonic()
            wait = min(state.cooldown_until for state in serving) - now
            retry_after = max(1, int(wait + 0.999)) if wait > 0 else max(1, int(self.health_interval))
            raise InferenceError(
                503,
                f"every backend serving '{model}' is unavailable; retry later",
                code="backends_unavailable",
                headers={"Retry-After": str(retry_after)},
            )
        if any(state.full() for state in healthy):
            healthy = [state for state in healthy if not state.full()]
            if not healthy:
                raise InferenceError(
                    503,
                    f"every backend serving '{model}' is at its in-flight cap; retry later",
                    code="backends_busy",
                    headers={"Retry-After": "1"},
                )
        if len(healthy) > 1:
            # Rotate the starting point so equal loads share the traffic instead of piling on the first.
            shift = next(self._tiebreak) % len(healthy)
            healthy = healthy[shift:] + healthy[:shift]
            healthy.sort(key=BackendState.load)
        return healthy

    def failed(self, state: BackendState, failure: BackendFailure) -> None:
        if failure.cool_down:
            if state.healthy:
                log.warning("backend_unhealthy", backend=state.name, reason=failure.reason, source="request")
            self._mark_down(state, failure.reason)

    def availability(self) -> str | None:
        """None when some backend takes work now (healthy, under its cap); otherwise why not."""
        if not self.states:
            return "no inference backend is configured"
        healthy = [state for state in self.states if state.healthy]
        if not healthy:
            return "every inference backend is down"
        if all(state.full() for state in healthy):
            return "every inference backend is at its in-flight cap"
        return None

    def statuses(self) -> list[BackendStatus]:
        now = time.monotonic()
        return [state.status(now) for state in self.states]

    async def ready_check(self) -> CheckResult:
        statuses = self.statuses()
        data = {
            status.name: {"healthy": status.healthy, "models": status.models, "last_error": status.last_error}
            for status in statuses
        }
        if not statuses:
            return CheckResult(status="ok", detail="no backends configured", data={})
        up = [status for status in statuses if status.healthy]
        # Degraded, never down, even with every backend down: Pylon still serves neurons and weights, so a
        # load balancer must keep routing to it (the /v1 routes answer 503 with Retry-After meanwhile).
        result: CheckStatus = "ok" if len(up) == len(statuses) else "degraded"
        return CheckResult(status=result, detail=f"{len(up)}/{len(statuses)} backends healthy", data=data)
