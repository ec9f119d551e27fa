"""`pylon backends list`: the configured inference backends, probed now: health and models."""

from __future__ import annotations

import asyncio

import typer

from cli.errors import cli_settings, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

app = typer.Typer(no_args_is_help=True, help="Inference backends (PYLON_BACKENDS).")


async def probe_backends(settings):  # type: ignore[no-untyped-def]
    """Probe every configured backend once, as a worker does at start, and return their statuses."""
    from app.inference.router import BackendRouter
    from app.inference.schemas import BackendList
    from app.inference.service import build_backends
    from app.inference.upstream import UpstreamPool

    pool = UpstreamPool()
    router = BackendRouter(
        build_backends(settings.inference, pool),
        cooldown=settings.inference.backend_cooldown,
        health_interval=settings.inference.backend_health_interval,
    )
    for state in router.states:
        await state.backend.start()
    try:
        await router.probe_all()
        return BackendList(backends=router.statuses())
    finally:
        for state in router.states:
            await state.backend.close()
        await pool.close()


@app.command("list")
@handle_errors
def list_backends(json_output: JsonOption = False, env_file: EnvFileOption = None) -> None:
    """Show each configured backend, whether it answers now, and the models it serves."""
    import msgspec
    from rich.table import Table

    from cli.errors import err_console

    settings = cli_settings(env_file)
    from app.logging import configure_logging
    from app.settings import LoggingSettings

    # Probe failures are the table's content, not log lines.
    configure_logging(LoggingSettings(level="ERROR", format=settings.logging.format))
    result = asyncio.run(probe_backends(settings))
    if json_output:
        out_console.print_json(msgspec.json.encode(result).decode())
        return
    if not result.backends:
        err_console.print("No backends configured: set PYLON_BACKENDS (see the README's Inference section).")
        return
    table = Table("name", "kind", "base url", "health", "models", "last error")
    table.columns[2].overflow = "fold"
    for backend in result.backends:
        health = "[green]healthy[/green]" if backend.healthy else "[red]down[/red]"
        table.add_row(
            backend.name,
            backend.kind,
            backend.base_url,
            health,
            ", ".join(backend.models),
            backend.last_error,
        )
    out_console.print(table)
