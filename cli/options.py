"""Options shared by several commands."""

from typing import Annotated

import typer

EnvFileOption = Annotated[
    str | None,
    typer.Option(
        "--env-file", envvar="PYLON_ENV_FILE", help="Env file with PYLON_* settings.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
