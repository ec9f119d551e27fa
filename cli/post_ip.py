"""`pylon post-ip`: post a miner's axon address on chain, signed by its hotkey (turbobt's `serve_axon`)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from cli.devchain import attach_dev_node, progress, register_hint
from cli.errors import CliError, err_console, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

if TYPE_CHECKING:
    from app.settings import Settings

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"


class AxonChange(msgspec.Struct, frozen=True, kw_only=True):
    """What `--json` prints: the neuron and its axon before and after (after is null on --dry-run)."""

    network: str
    netuid: int
    hotkey: str
    uid: int
    before: dict[str, Any]
    requested: dict[str, Any]
    after: dict[str, Any] | None
    dry_run: bool
    block: dict[str, Any] | None = None


def validate_ip(ip: str, allow_private: bool) -> str:
    """A public IPv4/IPv6 address as a string; a clear error for anything a validator could not reach."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise CliError(f"--ip: {ip!r} is not an IPv4 or IPv6 address") from None
    if address.is_unspecified:
        raise CliError(f"--ip: {address} means 'any address'; post the address validators can reach")
    if not allow_private:
        for flag, what in (
            ("is_loopback", "a loopback"),
            ("is_private", "a private"),
            ("is_link_local", "a link-local"),
            ("is_multicast", "a multicast"),
            ("is_reserved", "a reserved"),
        ):
            if getattr(address, flag):
                raise CliError(
                    f"--ip: {address} is {what} address, unreachable for validators "
                    "(pass --allow-private for a local or private network)"
                )
    return str(address)


def validate_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise CliError(f"--port: expected 1 to 65535, got {port}")
    return port


def parse_certificate(value: str | None) -> Any:
    """`--certificate HEX` (an ed25519 public key, algorithm 1) or `ALGORITHM:HEX`."""
    if not value:
        return None
    from app.chain.client import Certificate

    algorithm, sep, key = value.partition(":")
    if not sep:
        algorithm, key = "1", value
    key = key.strip().removeprefix("0x")
    try:
        bytes.fromhex(key)
        number = int(algorithm)
    except ValueError:
        raise CliError(
            "--certificate: expected a hex public key, optionally prefixed by ALGORITHM:"
        ) from None
    if not key or not 0 <= number <= 255:
        raise CliError("--certificate: expected a hex public key, optionally prefixed by ALGORITHM:")
    return Certificate(algorithm=number, public_key=key.lower())


def load_hotkey_wallet(name: str, hotkey: str, path: str) -> Any:
    """The wallet whose hotkey signs. The coldkey is never opened (serve_axon needs only the hotkey)."""
    from bittensor_wallet import Wallet

    wallet = Wallet(name=name, hotkey=hotkey, path=str(Path(os.path.expanduser(path))))
    hotkey_file = Path(wallet.hotkey_file.path)
    if not hotkey_file.is_file():
        raise CliError(
            f"no hotkey {hotkey!r} for wallet {name!r} at {hotkey_file.parent} "
            "(check --wallet-name, --wallet-hotkey and --wallet-path)"
        )
    try:
        _ = wallet.hotkey.ss58_address
    except Exception as exc:
        raise CliError(f"cannot read hotkey {hotkey!r} of wallet {name!r}: {type(exc).__name__}") from None
    return wallet


def _wallet_location(
    settings: Settings, name: str | None, hotkey: str, path: str | None
) -> tuple[str, str, str]:
    """The wallet to sign with: the options, else `PYLON_WALLET_*` (the env file too), else on the development
    chain the dev wallet `pylon serve` made and registered (as the server's own identity is chosen)."""
    name = name or settings.wallet.name
    if not name and settings.chain.network == "local":
        from app.weights.identities import DEV_WALLET_HOTKEY, DEV_WALLET_NAME, dev_wallet_dir

        return DEV_WALLET_NAME, DEV_WALLET_HOTKEY, path or str(dev_wallet_dir(settings))
    return name or "default", hotkey, path or settings.wallet.path or DEFAULT_WALLET_PATH


def _axon(neuron: Any) -> dict[str, Any]:
    return msgspec.to_builtins(neuron.axon_info)


async def _post(
    *,
    settings: Settings,
    wallet: Any,
    netuid: int,
    ip: str,
    port: int,
    protocol: int,
    certificate: Any,
    dry_run: bool,
    confirm: bool,
    as_json: bool,
) -> AxonChange:
    from app.chain.client import ChainError, ExtrinsicFailed
    from app.chain.lifespan import build_chain_client

    client = build_chain_client(settings)
    network = settings.chain.network
    hotkey = wallet.hotkey.ss58_address
    try:
        head = await client.head()
        neurons = await client.neurons(netuid, head)
        neuron = next((n for n in neurons if n.hotkey == hotkey), None)
        if neuron is None:
            raise CliError(
                f"hotkey {hotkey} is not registered on subnet {netuid} of {network}; "
                f"register it first: {register_hint(settings, hotkey, netuid)}"
            )
        requested = {"ip": ip, "port": port, "protocol": protocol}
        if certificate is not None:
            requested["certificate"] = msgspec.to_builtins(certificate)
        change = AxonChange(
            network=network,
            netuid=netuid,
            hotkey=hotkey,
            uid=neuron.uid,
            before=_axon(neuron),
            requested=requested,
            after=None,
            dry_run=dry_run,
            block=msgspec.to_builtins(head),
        )
        if not as_json:
            out_console.print(
                f"uid {neuron.uid} hotkey {hotkey} on subnet {netuid} ({network}) "
                f"at block {head.number}\n  now:       {_describe(change.before)}"
                f"\n  to send:   {_describe(requested)}",
                highlight=False,
            )
        if dry_run:
            return change
        if confirm and not typer.confirm("Post this axon on chain?", err=True):
            raise typer.Abort()
        try:
            with progress(f"posting the axon, waiting for its inclusion on {network}...", quiet=as_json):
                await client.serve_axon(wallet, netuid, ip, port, protocol, certificate=certificate)
        except ExtrinsicFailed as exc:
            raise CliError(f"the chain refused serve_axon: {exc}") from exc
        except ChainError as exc:
            raise CliError(f"serve_axon did not go through: {exc}") from exc
        after_head = await client.head()
        after = next((n for n in await client.neurons(netuid, after_head) if n.hotkey == hotkey), None)
        change = msgspec.structs.replace(
            change, after=_axon(after) if after else None, block=msgspec.to_builtins(after_head)
        )
        if not as_json:
            out_console.print(
                f"  on chain:  {_describe(change.after or {})} (block {after_head.number})", highlight=False
            )
        return change
    finally:
        await client.close()


def _describe(axon: dict[str, Any]) -> str:
    text = f"{axon.get('ip')}:{axon.get('port')} protocol {axon.get('protocol')}"
    if axon.get("certificate"):
        text += f" certificate {axon['certificate']['public_key'][:16]}..."
    return text


@handle_errors
def post_ip(
    ip: Annotated[str, typer.Option(help="Public IPv4 or IPv6 address validators reach the axon at.")],
    port: Annotated[int, typer.Option(help="Axon port.")],
    netuid: Annotated[
        int | None, typer.Option(envvar="PYLON_NETUID", help="Subnet.", show_default=False)
    ] = None,
    wallet_name: Annotated[
        str | None,
        typer.Option(
            envvar="PYLON_WALLET_NAME",
            help="Bittensor wallet name (default: `default`; with PYLON_NETWORK=local, the dev wallet of "
            "pylon serve).",
            show_default=False,
        ),
    ] = None,
    wallet_hotkey: Annotated[
        str, typer.Option(envvar="PYLON_WALLET_HOTKEY", help="Hotkey of the wallet (it signs).")
    ] = "default",
    wallet_path: Annotated[
        str | None,
        typer.Option(
            envvar="PYLON_WALLET_PATH",
            help=f"Folder of bittensor wallets ({DEFAULT_WALLET_PATH}).",
            show_default=False,
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            envvar="PYLON_NETWORK", help="finney, test, local or a ws(s):// URL.", show_default=False
        ),
    ] = None,
    protocol: Annotated[int, typer.Option(help="Axon protocol (4: HTTP; turbobt always posts 4).")] = 4,
    certificate: Annotated[
        str | None,
        typer.Option(
            help="Post a TLS certificate too: ed25519 public key hex (or ALGORITHM:HEX).", show_default=False
        ),
    ] = None,
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help="Accept loopback and private addresses (local networks).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Post the axon address (and optionally a certificate) of a registered hotkey on a subnet."""
    from app.logging import configure_logging
    from app.settings import load_settings

    settings = load_settings(env_file=env_file)
    # Logs go to stderr, so stdout carries only the result (`--json` stays parseable).
    configure_logging(settings.logging)
    if network:
        settings = msgspec.structs.replace(
            settings, chain=msgspec.structs.replace(settings.chain, network=network)
        )
    settings = attach_dev_node(settings)
    ip = validate_ip(ip, allow_private)
    port = validate_port(port)
    if not 0 <= protocol <= 255:
        raise CliError(f"--protocol: expected 0 to 255, got {protocol}")
    cert = parse_certificate(certificate)
    wallet = load_hotkey_wallet(*_wallet_location(settings, wallet_name, wallet_hotkey, wallet_path))
    change = asyncio.run(
        _post(
            settings=settings,
            wallet=wallet,
            netuid=settings.chain.netuid if netuid is None else netuid,
            ip=ip,
            port=port,
            protocol=protocol,
            certificate=cert,
            dry_run=dry_run,
            confirm=not yes,
            as_json=as_json,
        )
    )
    if as_json:
        out_console.print_json(msgspec.json.encode(change).decode())
    elif dry_run:
        err_console.print("Dry run: nothing was sent.")
