"""`pylon config show`: the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer

from cli.errors import cli_settings, handle_errors, out_console
from cli.options import EnvFileOption

app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")


@app.command("show")
@handle_errors
def show(env_file: EnvFileOption = None) -> None:
    """Print the effective settings as JSON, with secrets masked."""
    from app.settings import masked

    settings = cli_settings(env_file)
    out_console.print_json(json.dumps(masked(settings)))
