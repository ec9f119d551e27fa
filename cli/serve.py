"""`pylon serve`: migrate, then run the app under granian (several workers are several processes)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import err_console, handle_errors
from cli.options import EnvFileOption


def _prepare_metrics_dir(data_dir: str) -> Path:
    # Must happen before prometheus_client is imported anywhere: it picks its value class at import,
    # and granian forks workers from this process.
    path = Path(data_dir).resolve() / "metrics" / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(envvar="PYLON_HOST", help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(envvar="PYLON_PORT", help="Port to bind.")] = None,
    workers: Annotated[int | None, typer.Option(envvar="PYLON_WORKERS", help="Worker processes.")] = None,
    log_level: Annotated[str | None, typer.Option(envvar="PYLON_LOG_LEVEL", help="DEBUG, INFO, ...")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations before serving.")] = True,
    env_file: EnvFileOption = None,
) -> None:
    """Run Pylon's HTTP service."""
    # Workers build their own settings from the environment: hand them the same file and overrides.
    if env_file:
        os.environ["PYLON_ENV_FILE"] = str(Path(env_file).resolve())
    for name, value in (("PYLON_HOST", host), ("PYLON_PORT", port), ("PYLON_WORKERS", workers)):
        if value is not None:
            os.environ[name] = str(value)
    if log_level:
        os.environ["PYLON_LOG_LEVEL"] = log_level.upper()

    from app.settings import load_settings

    settings = load_settings()
    metrics_dir = _prepare_metrics_dir(settings.data_dir)

    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    from app.db import migrations
    from app.logging import configure_logging, granian_log_config

    configure_logging(settings.logging)
    if migrate:
        migrations(settings).upgrade("head")

    err_console.print(
        f"Pylon serving on http://{settings.server.host}:{settings.server.port} "
        f"(network {settings.chain.network}, {settings.server.workers} worker(s)); "
        f"docs at /schema/swagger",
        highlight=False,
        soft_wrap=True,
    )
    server = Server(
        "app.main:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level=LogLevels(settings.logging.level.lower()),
        log_dictconfig=granian_log_config(settings.logging),
        reload=reload,
        working_dir=Path(__file__).resolve().parent.parent,
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
