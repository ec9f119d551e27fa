"""`pylon`: the operator CLI. Commands stay thin over `app/`; imports are lazy so `--help` is instant."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import backends as backends_commands
from cli import chain as chain_commands
from cli import chain_metadata
from cli import config as config_commands
from cli import db as db_commands
from cli import gateway as gateway_commands
from cli import keys as keys_commands
from cli import localnet as localnet_commands
from cli import wallet as wallet_commands
from cli import weights as weights_commands
from cli.errors import PylonGroup, out_console, state
from cli.post_ip import post_ip
from cli.serve import serve

app = typer.Typer(
    name="pylon",
    cls=PylonGroup,
    help="Pylon: a gateway for Bittensor subnets.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    state.debug = debug


@app.command()
def version() -> None:
    """Print Pylon's version."""
    from app import __version__

    out_console.print(__version__)


app.command()(serve)
app.add_typer(db_commands.app, name="db")
app.add_typer(config_commands.app, name="config")
chain_commands.app.command("dump-metadata")(chain_metadata.dump_metadata)
app.add_typer(chain_commands.app, name="chain")
app.add_typer(localnet_commands.app, name="localnet")
app.command(name="post-ip")(post_ip)
app.add_typer(weights_commands.app, name="weights")
app.add_typer(keys_commands.app, name="keys")
app.add_typer(backends_commands.app, name="backends")
app.add_typer(wallet_commands.app, name="wallet")
app.add_typer(gateway_commands.app, name="gateway")


if __name__ == "__main__":
    app()
