"""`pylon localnet`: a local subtensor node (websocket JSON-RPC) over the simulated subnet, for turbobt;
`pylon localnet register`: a hotkey registered on the running development chain."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from typing import Annotated

import msgspec
import typer

from cli.devchain import progress
from cli.errors import CliError, err_console, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

app = typer.Typer(
    help="Run a local subtensor node over the simulated subnet, or register a hotkey on the running one.",
    invoke_without_command=True,
)


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    """What `pylon localnet register --json` prints."""

    node: str
    hotkey: str
    validator: bool
    uids: dict[int, int]


def _netuids(values: list[str]) -> list[int]:
    netuids: list[int] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    netuids.append(int(part))
                except ValueError:
                    raise typer.BadParameter(f"not a netuid: {part!r}", param_hint="--netuids") from None
    return sorted(set(netuids)) or [1]


def _check_ss58(values: list[str], option: str) -> list[str]:
    from scalecodec.utils.ss58 import ss58_decode

    for value in values:
        try:
            ss58_decode(value)
        except ValueError:
            raise typer.BadParameter(f"not an ss58 address: {value!r}", param_hint=option) from None
    return values


@app.callback()
@handle_errors
def localnet(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(envvar="PYLON_LOCALNET_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="PYLON_LOCALNET_PORT", help="Port to bind (0: any free).")
    ] = 9944,
    block_time: Annotated[
        float, typer.Option(envvar="PYLON_LOCALNET_BLOCK_TIME", help="Seconds between blocks.")
    ] = 12.0,
    netuids: Annotated[
        list[str], typer.Option("--netuids", envvar="PYLON_LOCALNET_NETUIDS", help="Subnets (repeat or 1,2).")
    ] = ["1"],  # noqa: B006 - typer needs a list default
    neurons: Annotated[int, typer.Option(envvar="PYLON_LOCALNET_NEURONS", help="Neurons per subnet.")] = 256,
    metadata_dir: Annotated[
        str | None,
        typer.Option(
            envvar="PYLON_CHAIN_METADATA_DIR",
            help="Folder with metadata_v15.json (or .json.gz) and runtime_version.json recorded by "
            "`pylon chain dump-metadata` (default: the runtime shipped with Pylon).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(envvar="PYLON_LOCALNET_SEED", help="Seed of the simulated state.")] = 0,
    register: Annotated[
        list[str] | None,
        typer.Option("--register", help="Register this ss58 hotkey on every subnet (repeat)."),
    ] = None,
    validator: Annotated[
        list[str] | None,
        typer.Option(
            "--validator", help="Register this ss58 hotkey with a validator permit and stake (repeat)."
        ),
    ] = None,
    tempo: Annotated[int, typer.Option(help="Blocks per epoch.")] = 360,
    weights_rate_limit: Annotated[int, typer.Option(help="Blocks between weight sets of one hotkey.")] = 100,
    commit_reveal: Annotated[bool, typer.Option(help="Subnets take timelocked weight commits only.")] = False,
    commitment_rate_limit: Annotated[
        int, typer.Option(help="Blocks between two commitments of one hotkey on one subnet (subtensor: 100).")
    ] = 10,
) -> None:
    """Run a local subtensor node that turbobt and bittensor connect to (ws://HOST:PORT)."""
    if ctx.invoked_subcommand is not None:
        return
    from app.chain.client import SubnetHyperparams
    from app.devchain.node.codec import MetadataMissing, Runtime
    from app.devchain.node.node import build_node
    from app.devchain.node.server import LocalnetServer
    from app.logging import configure_logging
    from app.settings import LoggingSettings

    if block_time <= 0:
        raise typer.BadParameter("expected seconds above 0", param_hint="--block-time")
    if neurons < 1 or neurons > 4096:
        raise typer.BadParameter("expected 1 to 4096", param_hint="--neurons")
    configure_logging(LoggingSettings())
    with progress("loading the runtime and building the simulated subnet..."):
        try:
            runtime = Runtime.from_dir(metadata_dir)
        except MetadataMissing as exc:
            raise CliError(str(exc)) from exc
        node = build_node(
            runtime,
            netuids=_netuids(netuids),
            neurons=neurons,
            seed=seed,
            block_time=block_time,
            register=_check_ss58(register or [], "--register"),
            validators=_check_ss58(validator or [], "--validator"),
            hyperparams=SubnetHyperparams(
                tempo=tempo,
                weights_rate_limit=weights_rate_limit,
                commit_reveal_weights_enabled=commit_reveal,
            ),
            commitment_rate_limit=commitment_rate_limit,
        )

    async def run() -> None:
        server = LocalnetServer(node, host=host, port=port)
        try:
            await server.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"{host}:{port} is taken: pass --port (PYLON_LOCALNET_PORT) a free one"
                ) from None
            raise
        head = node.chain.head
        err_console.print(
            f"pylon localnet on {server.url} (spec {runtime.spec_version}, subnets {node.chain.netuids}, "
            f"{neurons} neurons, a block every {block_time:g}s, head #{head.number}); "
            f"PYLON_NETWORK={server.url} pylon serve reads it",
            highlight=False,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@app.command("register")
@handle_errors
def register_hotkey(
    hotkey: Annotated[
        str,
        typer.Argument(
            help="ss58 hotkey to register.",
            show_default=False,
            # Checked by Typer, so a bad address is a usage error (exit 2).
            callback=lambda value: _check_ss58([value], "HOTKEY")[0],
        ),
    ],
    validator: Annotated[
        bool, typer.Option("--validator", help="With a validator permit and stake (it may set weights).")
    ] = False,
    netuid: Annotated[
        list[int] | None, typer.Option("--netuid", help="Subnet (repeat; default: every subnet).")
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="The node's ws:// URL (default: ws://127.0.0.1:PYLON_LOCAL_NODE_PORT, pylon serve's).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Register a hotkey on the running development chain (`pylon serve` with PYLON_NETWORK=local, or
    `pylon localnet`). Development only: a real chain takes `btcli subnet register`, paid in TAO."""
    from app.devchain.node.devnode import node_url, rpc
    from cli.errors import cli_settings

    url = node or node_url(cli_settings(env_file).devchain.node_port)
    try:
        answer = rpc(url, "pylon_registerHotkey", [hotkey, netuid or None, validator])
    except ConnectionError:
        raise CliError(
            f"no development chain at {url}: start `pylon serve` with PYLON_NETWORK=local "
            "(or `pylon localnet`), or pass --node"
        ) from None
    except RuntimeError as exc:
        raise CliError(f"the node refused the registration: {exc}") from None
    result = Registration(
        node=url, hotkey=hotkey, validator=validator, uids={int(k): int(v) for k, v in answer.items()}
    )
    if json_output:
        out_console.print_json(msgspec.json.encode(result).decode())
        return
    role = "validator (permit and stake)" if validator else "neuron"
    for subnet, uid in sorted(result.uids.items()):
        out_console.print(f"subnet {subnet}: uid {uid}", highlight=False)
    err_console.print(
        f"{hotkey} registered as a {role} on {url}; it shows in the metagraph from the next block",
        highlight=False,
        soft_wrap=True,
    )
