"""`pylon db ...`: alembic migrations through advanced-alchemy, on the configured database."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import StatusLine, cli_settings, err_console, handle_errors, out_console, status_line
from cli.options import EnvFileOption

if TYPE_CHECKING:
    from app.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Database migrations.")


def _describe(revision: str | None) -> str:
    from app.db import head_revision

    if revision is None:
        return "none (no migration applied)"
    return f"{revision} (head)" if revision == head_revision() else revision


class _MigrationSteps(logging.Handler):
    """Turns alembic's `Running upgrade 0001 -> 0002, keys: ...` record, logged as each migration starts,
    into the status line; the step before it is then done."""

    def __init__(self, status: StatusLine, total: int | None) -> None:
        super().__init__(level=logging.INFO)
        self.status, self.total, self.count = status, total, 0
        self.running: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Running "):
            return  # alembic's other lines: "Context impl SQLiteImpl." ...
        self.finish()
        self.count += 1
        self.running = _step_name(message.removeprefix("Running "))
        of = f" of {self.total}" if self.total and self.count <= self.total else ""
        self.status.update(f"Migrating the database, {self.count}{of}: {self.running}")

    def finish(self) -> None:
        if self.running is not None:
            self.status.step_done(self.running)
            self.running = None


def _step_name(step: str) -> str:
    """`upgrade  -> 0001, initial: the version table only` -> `upgrade base -> 0001, initial`."""
    step = re.sub(r"(upgrade|downgrade)\s+->", r"\1 base ->", step)
    step = re.sub(r"->\s*,", "-> base,", step)
    # Pylon's revision messages are `name: what it does`; the name is enough on one line.
    return step.split(": ", 1)[0]


def _pending_steps(settings: Settings, target: str, *, downgrade: bool) -> int | None:
    """How many migrations an upgrade (or downgrade) to `target` runs; None if alembic cannot tell."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from app.db import MIGRATIONS_DIR, current_revision

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    current = current_revision(settings) or "base"
    upper, lower = (current, target) if downgrade else (target, current)
    try:
        return sum(1 for _ in script.iterate_revisions(upper, lower, select_for_downgrade=downgrade))
    except CommandError:
        return None


@contextlib.contextmanager
def _migration_progress(settings: Settings, target: str, *, downgrade: bool = False) -> Iterator[None]:
    """On a terminal: one status line per migration while alembic runs them, a line for each one done."""
    if not err_console.is_terminal:
        yield
        return
    verb = "Downgrading" if downgrade else "Upgrading"
    with status_line(f"{verb} the database to {target}") as status:
        handler = _MigrationSteps(status, _pending_steps(settings, target, downgrade=downgrade))
        # alembic logs each step at INFO on this logger; nothing else in the CLI shows that logger.
        logger = logging.getLogger("alembic.runtime.migration")
        saved = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
            handler.finish()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]


@app.command()
@handle_errors
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    env_file: EnvFileOption = None,
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.db import current_revision, migrations

    settings = cli_settings(env_file)
    with _migration_progress(settings, revision):
        migrations(settings).upgrade(revision)
    err_console.print(f"database upgraded to {_describe(current_revision(settings))}", highlight=False)


@app.command()
@handle_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")] = "-1",
    env_file: EnvFileOption = None,
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from app.db import current_revision, migrations

    settings = cli_settings(env_file)
    with _migration_progress(settings, revision, downgrade=True):
        migrations(settings).downgrade(revision)
    err_console.print(f"database downgraded to {_describe(current_revision(settings))}", highlight=False)


@app.command()
@handle_errors
def current(env_file: EnvFileOption = None) -> None:
    """Print the database's current revision (`none` before the first upgrade)."""
    from app.db import current_revision

    out_console.print(_describe(current_revision(cli_settings(env_file))), highlight=False)


@app.command()
@handle_errors
def revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the revision changes.")],
    autogenerate: Annotated[bool, typer.Option(help="Compare the models with the database.")] = True,
    rev_id: Annotated[str | None, typer.Option(help="Revision id to use instead of a random one.")] = None,
    env_file: EnvFileOption = None,
) -> None:
    """Create a migration in alembic/versions (autogenerated from the models by default)."""
    from app.db import migrations

    migrations(cli_settings(env_file)).revision(message=message, autogenerate=autogenerate, rev_id=rev_id)
