"""`pylon serve`: migrate, then run the app under granian (several workers are several processes)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.devchain import progress
from cli.errors import CliError, err_console, handle_errors
from cli.options import EnvFileOption

if TYPE_CHECKING:
    from app.devchain.node.devnode import DevNodeProcess
    from app.settings import Settings
    from app.weights.identities import Identity

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_metrics_dir(data_dir: str) -> Path:
    # Must happen before prometheus_client is imported anywhere: it picks its value class at import,
    # and granian forks workers from this process.
    root = Path(data_dir).resolve() / "metrics"
    # Folders of servers that were killed before they could clean up would only fill the disk.
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name.isdigit() and not _pid_alive(int(stale.name)):
                shutil.rmtree(stale, ignore_errors=True)
    path = root / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _reload_options() -> dict[str, Any]:
    """granian's reloader, watching Pylon's Python sources only (the SQLite file lives under the project)."""
    try:
        import watchfiles
    except ImportError:
        raise CliError(
            "--reload needs watchfiles: `uv sync --group dev` (it is a development tool)"
        ) from None
    # Forked workers would inherit the modules this process already imported (settings, db, logging) and
    # never see their changes; spawned workers import everything afresh on each reload.
    multiprocessing.set_start_method("spawn", force=True)
    return {
        "reload": True,
        "reload_paths": [PROJECT_ROOT / "app"],
        "reload_filter": watchfiles.PythonFilter,
    }


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

    from app.settings import load_settings, secret_values

    settings = load_settings()
    # Workers resolve relative paths from granian's working dir, not from here: pin the data dir.
    os.environ["PYLON_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    # One boot id for every worker of this start: a restart takes back this instance's interrupted jobs.
    from app.jobs.queue import new_boot_id

    os.environ["PYLON_JOBS_BOOT_ID"] = new_boot_id()
    metrics_dir = _prepare_metrics_dir(settings.data_dir)

    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    from app.db import migrations
    from app.logging import configure_logging, granian_log_config

    redact = secret_values(settings)
    configure_logging(settings.logging, redact=redact)
    identities = _log_signing_identity(settings)
    # The node loads its runtime (seconds) while the migrations run.
    node = _start_dev_node(settings, identities)
    try:
        if migrate:
            migrations(settings).upgrade("head")
        reload_options: dict[str, Any] = {}
        if reload:
            reload_options = _reload_options()
        if node is not None:
            _wait_dev_node(node)
    except BaseException:
        if node is not None:
            node.stop()
        raise

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
        log_dictconfig=granian_log_config(settings.logging, redact=redact),
        working_dir=PROJECT_ROOT,
        # Bounded shutdown: a worker that has not stopped by then is killed (see ServerSettings).
        workers_kill_timeout=settings.server.shutdown_timeout,
        **reload_options,
    )
    try:
        server.serve()
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _start_dev_node(settings: Settings, identities: dict[str, Identity]) -> DevNodeProcess | None:
    """With `PYLON_NETWORK=local`, run the development chain once, as a node every worker reads.

    The identities' hotkeys are registered with a validator permit before the node serves: the workers'
    `register_dev_validator` goes through turbobt, which registers nothing (as on a real chain).
    """
    devchain = settings.devchain
    # PYLON_LOCAL_UNREACHABLE simulates a chain that is down: there is no node to serve it.
    if settings.chain.network != "local" or not devchain.node or devchain.unreachable:
        return None
    from app.devchain.node.devnode import DevNodeProcess

    validators: dict[str, set[int] | None] = {}
    for identity in identities.values():
        known = validators.get(identity.hotkey_ss58, set())
        validators[identity.hotkey_ss58] = (
            None if identity.netuids is None or known is None else known | identity.netuids
        )
    node = DevNodeProcess(settings, validators)
    node.start()
    return node


def _wait_dev_node(node: DevNodeProcess) -> None:
    from app.devchain.node.devnode import DevNodeError

    try:
        with progress("starting the development chain's node..."):
            url = node.wait()
    except DevNodeError as exc:
        raise CliError(str(exc)) from None
    # Workers build their own settings from the environment: this is how they find the node.
    os.environ["PYLON_LOCAL_NODE_URL"] = url
    err_console.print(
        f"development chain served at {url} (the CLI, PYLON_NETWORK={url} and turbobt read it)",
        highlight=False,
        soft_wrap=True,
    )


def _log_signing_identity(settings: Settings) -> dict[str, Identity]:
    """One line saying which hotkey weights, certificates and Epistula's Signed-For use (public keys only)."""
    import structlog

    from app.settings import DEFAULT_IDENTITY
    from app.weights.identities import IdentityError, load_identities

    log = structlog.get_logger("cli.serve")
    try:
        identities = load_identities(settings)
    except IdentityError as exc:
        # The workers fail on it with the same message; say it once here too.
        log.warning("signing_identity_unreadable", error=str(exc))
        return {}
    default = identities.get(DEFAULT_IDENTITY)
    log.info(
        "signing_identity",
        identity=DEFAULT_IDENTITY if default else None,
        hotkey=default.hotkey_ss58 if default else None,
        wallet=default.wallet.name if default else None,
        others=sorted(name for name in identities if name != DEFAULT_IDENTITY),
        epistula_signed_for=settings.epistula.hotkey or (default.hotkey_ss58 if default else None),
    )
    return identities
