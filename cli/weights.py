"""`pylon weights ...`: schedule weights and read jobs, through the same service as the API (no HTTP).

The job lands in the database; the worker of a running `pylon serve` on the same database applies it. With
`PYLON_NETWORK=local` and the development node of `pylon serve` up, the service reads that chain (a job gets
its epoch window and skipped hotkeys at once); otherwise it has no chain view and the worker fills them in.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cli.devchain import attach_dev_node
from cli.errors import CliError, cli_settings, err_console, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

app = typer.Typer(no_args_is_help=True, help="Schedule weights and read apply-weights jobs.")
T = TypeVar("T")


def _run(env_file: str | None, action: Callable[[Any], Awaitable[T]]) -> T:
    from app.chain.lifespan import build_chain_client
    from app.db import create_engine
    from app.logging import configure_logging
    from app.weights.identities import load_identities
    from app.weights.service import WeightsService

    settings = cli_settings(env_file)
    # Logs go to stderr; stdout carries only the data.
    configure_logging(settings.logging)
    settings = attach_dev_node(settings)

    async def main() -> T:
        engine = create_engine(settings)
        # A private copy of the development chain would be a different chain from the server's: without the
        # node there is no chain client, and the worker fixes the job's epoch window at its first attempt.
        chain = build_chain_client(settings) if settings.devchain.node_url else None
        try:
            service = WeightsService(settings, engine, chain, load_identities(settings))
            return await action(service)
        finally:
            if chain is not None:
                await chain.close()
            await engine.dispose()

    return asyncio.run(main())


def _print_json(value: Any) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _read_weights(file: str) -> dict[str, float]:
    raw = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CliError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and set(data) == {"weights"}:
        data = data["weights"]
    if not isinstance(data, dict):
        raise CliError(f'{file}: expected {{"hotkey": weight, ...}} or {{"weights": {{...}}}}')
    weights: dict[str, float] = {}
    for hotkey, weight in data.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise CliError(f"{file}: the weight of {hotkey!r} is not a number: {weight!r}")
        weights[hotkey] = float(weight)
    return weights


@app.command("set")
@handle_errors
def set_weights(
    netuid: Annotated[int, typer.Option("--netuid", help="Subnet to set weights on.")],
    file: Annotated[str, typer.Option("--file", help='JSON {"hotkey": weight} (or "-" for stdin).')],
    identity: Annotated[str, typer.Option("--identity", help="Identity (wallet) that signs.")] = "default",
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Schedule weights: store a job that the worker of `pylon serve` applies."""
    from app.weights.schemas import WeightsValidationError
    from app.weights.service import JobNotFound

    weights = _read_weights(file)

    async def action(service: Any) -> Any:
        try:
            return await service.submit(identity, netuid, weights)
        except (WeightsValidationError, JobNotFound) as exc:
            raise CliError(str(exc)) from None

    result = _run(env_file, action)
    if json_output:
        _print_json(result)
        return
    out_console.print(str(result.job_id))
    err_console.print(
        f"job {result.job_id}: {result.count} weights for identity {result.identity!r} on subnet {netuid} "
        f"scheduled ({result.status})",
        highlight=False,
    )


@app.command("jobs")
@handle_errors
def list_jobs(
    netuid: Annotated[int | None, typer.Option("--netuid", help="Only this subnet.")] = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Only this identity.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, running, set, committed...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Newest N jobs.")] = 20,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """List apply-weights jobs, newest first."""
    from rich.table import Table

    from app.weights.models import JOB_STATUSES
    from app.weights.schemas import WeightsJobList

    if status is not None and status not in JOB_STATUSES:
        raise CliError(f"--status must be one of {', '.join(JOB_STATUSES)}")
    found = _run(
        env_file,
        lambda service: service.list_jobs(
            netuid=netuid, identities=[identity] if identity else None, status=status, limit=limit
        ),
    )
    if json_output:
        _print_json(WeightsJobList(jobs=found))
        return
    table = Table("id", "identity", "netuid", "status", "attempts", "count", "block", "created", "last error")
    for job in found:
        table.add_row(
            str(job.id),
            job.identity,
            str(job.netuid),
            job.status,
            str(job.attempts),
            str(job.count),
            str(job.applied_block or ""),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            (job.last_error or "")[:60],
        )
    out_console.print(table)


@app.command("show")
@handle_errors
def show(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Show one job, its weights included."""
    import msgspec

    from app.weights.service import JobNotFound

    async def action(service: Any) -> Any:
        try:
            return await service.get_job(job_id)
        except JobNotFound as exc:
            raise CliError(str(exc)) from None

    job = _run(env_file, action)
    if json_output:
        _print_json(job)
        return
    data = msgspec.to_builtins(job)
    weights = data.pop("weights", {}) or {}
    for name, value in data.items():
        out_console.print(f"[bold]{name}[/bold]: {value}", highlight=False)
    out_console.print(f"[bold]weights[/bold] ({len(weights)}):", highlight=False)
    for hotkey, weight in sorted(weights.items(), key=lambda item: -item[1]):
        out_console.print(f"  {hotkey}  {weight:g}", highlight=False)
