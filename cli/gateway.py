"""`pylon gateway ...`: the subnet gateway's miner records and scores → weights, straight on the database.

No server is needed: the records are the rows every worker of `pylon serve` writes (every
`PYLON_GATEWAY_FLUSH_INTERVAL` seconds), and `set-weights` stores a job the worker of `pylon serve` applies,
through the same weights service as `pylon weights set`.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from cli.errors import CliError, err_console, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

app = typer.Typer(no_args_is_help=True, help="The subnet gateway: miner records, scores into weights.")


def _print_json(value: Any) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _ago(when: float | None) -> str:
    if when is None:
        return ""
    seconds = max(0.0, time.time() - when)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


@app.command("miners")
@handle_errors
def miners(
    netuid: Annotated[int, typer.Option("--netuid", help="Subnet whose miners to show.")],
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """The miners' records: requests, successes, failures, score and latency averages, best first."""
    import asyncio

    from rich.table import Table

    from app.db import create_engine
    from app.gateway.records import stored_views
    from app.gateway.schemas import MinerList
    from cli.errors import cli_settings

    settings = cli_settings(env_file)

    async def read() -> Any:
        engine = create_engine(settings)
        try:
            return await stored_views(engine, netuid)
        finally:
            await engine.dispose()

    views = asyncio.run(read())
    if json_output:
        _print_json(MinerList(netuid=netuid, block=None, miners=views, routable=[]))
        return
    if not views:
        err_console.print(f"No records for subnet {netuid} yet: send requests through a subnet backend.")
        return
    table = Table("uid", "hotkey", "requests", "ok", "failed", "score", "latency", "last seen")
    for view in views:
        table.add_row(
            str(view.uid),
            view.hotkey,
            str(view.requests),
            str(view.successes),
            str(view.failures),
            "" if view.score is None else f"{view.score:.3f}",
            "" if view.latency is None else f"{view.latency * 1000:.1f} ms",
            _ago(view.last_seen),
        )
    out_console.print(table)


@app.command("set-weights")
@handle_errors
def set_weights(
    netuid: Annotated[int, typer.Option("--netuid", help="Subnet to set weights on.")],
    identity: Annotated[str, typer.Option("--identity", help="Identity (wallet) that signs.")] = "default",
    min_requests: Annotated[
        int, typer.Option("--min-requests", min=0, help="Least answers a miner needs to count.")
    ] = 1,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Turn the stored scores into a weights job (weight = score), applied by `pylon serve`'s worker."""
    from app.db import create_engine
    from app.gateway.records import stored_views
    from app.gateway.schemas import FromScoresResponse
    from app.gateway.service import NoScores, weights_from_views
    from app.weights.schemas import WeightsValidationError
    from app.weights.service import JobNotFound
    from cli.weights import _run

    async def action(service: Any) -> Any:
        engine = create_engine(service.settings)
        try:
            views = await stored_views(engine, netuid)
        finally:
            await engine.dispose()
        try:
            weights = weights_from_views(views, min_requests)
            job = await service.submit(identity, netuid, weights)
        except (NoScores, WeightsValidationError, JobNotFound) as exc:
            raise CliError(str(exc)) from None
        return FromScoresResponse(
            job_id=job.job_id, status=job.status, netuid=netuid, identity=job.identity, weights=weights
        )

    result = _run(env_file, action)
    if json_output:
        _print_json(result)
        return
    out_console.print(str(result.job_id))
    err_console.print(
        f"job {result.job_id}: {len(result.weights)} weights from scores for identity {result.identity!r} "
        f"on subnet {netuid} scheduled ({result.status})",
        highlight=False,
    )
