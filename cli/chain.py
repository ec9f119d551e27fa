"""`pylon chain head` and `pylon chain neurons`: the configured chain, read through the API's service.

With `PYLON_NETWORK=local` the CLI reads the development chain `pylon serve` serves (its node on
`PYLON_LOCAL_NODE_PORT`); with no node up it runs its own simulated copy (same seed, so the same neurons, at
the chain's first block).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from cli.devchain import attach_dev_node
from cli.errors import CliError, cli_settings, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

app = typer.Typer(no_args_is_help=True, help="Read the chain: the head block and a subnet's neurons.")
T = TypeVar("T")


def _run(env_file: str | None, action: Callable[[Any], Awaitable[T]]) -> T:
    """Build the chain client and the neurons service for one command, run `action(service)`, close."""
    from app.chain.client import BlockNotFound, ChainUnavailable, UnknownNetuid
    from app.chain.lifespan import build_chain_client, build_metagraph_cache
    from app.logging import configure_logging
    from app.neurons.service import NeuronsService

    settings = cli_settings(env_file)
    # Logs go to stderr (turbobt's connection lines among them), so stdout carries only the data.
    configure_logging(settings.logging)
    settings = attach_dev_node(settings)

    async def main() -> T:
        client = build_chain_client(settings)
        try:
            service = NeuronsService(build_metagraph_cache(settings, client), client)
            return await action(service)
        except (UnknownNetuid, BlockNotFound) as exc:
            raise CliError(str(exc)) from exc
        except (ChainUnavailable, TimeoutError) as exc:
            raise CliError(f"chain unavailable ({settings.chain.network}): {exc}") from exc
        finally:
            await client.close()

    return asyncio.run(main())


@app.command("head")
@handle_errors
def head(json_output: JsonOption = False, env_file: EnvFileOption = None) -> None:
    """Print the latest block's number and hash."""
    import msgspec

    block = _run(env_file, lambda service: service.head())
    if json_output:
        sys.stdout.write(msgspec.json.encode(block).decode() + "\n")
    else:
        out_console.print(f"{block.number} {block.hash}", highlight=False)


@app.command("neurons")
@handle_errors
def neurons(
    netuid: Annotated[int | None, typer.Option("--netuid", help="Subnet (default: PYLON_NETUID).")] = None,
    block: Annotated[int | None, typer.Option("--block", help="Block number (default: latest).")] = None,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """List a subnet's neurons: a table for people, `--json` for scripts (the API's response body)."""
    from rich.console import Console
    from rich.table import Table

    settings = cli_settings(env_file)
    subnet = settings.chain.netuid if netuid is None else netuid
    cached = _run(env_file, lambda s: s.latest(subnet) if block is None else s.at_block(subnet, block))
    if json_output:
        sys.stdout.write(cached.body.decode() + "\n")
        return
    table = Table(title=f"subnet {subnet} at block {cached.block.number}", title_justify="left")
    for column, justify in (
        ("uid", "right"),
        ("hotkey", "left"),
        ("stake", "right"),
        ("trust", "right"),
        ("incentive", "right"),
        ("vpermit", "center"),
        ("axon", "left"),
    ):
        # Hotkeys are copied from here: never truncate them.
        table.add_column(column, justify=justify, no_wrap=column == "hotkey")  # type: ignore[arg-type]
    for neuron in sorted(cached.neurons.values(), key=lambda n: n.uid):
        axon = neuron.axon_info
        table.add_row(
            str(neuron.uid),
            neuron.hotkey,
            f"{neuron.stake:,.2f}",
            f"{neuron.trust:.4f}",
            f"{neuron.incentive:.4f}",
            "✓" if neuron.validator_permit else "",
            f"{axon.ip}:{axon.port}" if axon.port else "-",
        )
    # Piped output has no terminal width; do not squeeze the columns to 80.
    console = out_console if out_console.is_terminal else Console(width=160)
    console.print(table)
