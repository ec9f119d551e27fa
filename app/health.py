"""Liveness and readiness.

`/ready` asks every registered check (the database here; the chain and inference backends register
theirs in their own lifespan hooks) and answers 503 if any is down. `degraded` still answers 200:
Pylon can serve, from cache, while a dependency recovers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State
from sqlalchemy import text

CheckStatus = Literal["ok", "degraded", "down"]


class CheckResult(msgspec.Struct, kw_only=True):
    status: CheckStatus
    detail: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class HealthResponse(msgspec.Struct):
    status: Literal["ok"] = "ok"


class ReadyResponse(msgspec.Struct, kw_only=True):
    status: CheckStatus
    checks: dict[str, CheckResult]


ReadyCheck = Callable[[], Awaitable[CheckResult]]
CHECK_TIMEOUT = 2.0


def ready_checks(state: State) -> dict[str, ReadyCheck]:
    """The registry features add their checks to (`ready_checks(app.state)["chain"] = ...`)."""
    checks: dict[str, ReadyCheck] = state.setdefault("ready_checks", {})
    return checks


def database_check(engine: Any) -> ReadyCheck:
    async def check() -> CheckResult:
        started = time.perf_counter()
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            return CheckResult(status="down", detail=f"{type(exc).__name__}: database unreachable")
        return CheckResult(status="ok", data={"latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    return check


async def _run(check: ReadyCheck) -> CheckResult:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except TimeoutError:
        return CheckResult(status="down", detail=f"no answer within {CHECK_TIMEOUT}s")


async def run_checks(checks: dict[str, ReadyCheck]) -> tuple[CheckStatus, dict[str, CheckResult]]:
    """Every check at once, each bounded by CHECK_TIMEOUT; the worst status is the overall one."""
    names = list(checks)
    results = dict(zip(names, await asyncio.gather(*(_run(checks[n]) for n in names)), strict=True))
    statuses = {r.status for r in results.values()}
    overall: CheckStatus = "down" if "down" in statuses else "degraded" if "degraded" in statuses else "ok"
    return overall, results


@get("/health", sync_to_thread=False, tags=["ops"], opt={"open": "liveness"})
def health() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse()


@get("/ready", tags=["ops"], opt={"open": "readiness"})
async def ready(request: Request) -> Response[ReadyResponse]:
    """Readiness: each dependency's status; 503 when one is down, 200 when all are ok or degraded."""
    overall, results = await run_checks(ready_checks(request.app.state))
    return Response(
        ReadyResponse(status=overall, checks=results), status_code=503 if overall == "down" else 200
    )
