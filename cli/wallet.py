"""`pylon wallet create`: a password-less bittensor wallet for development (a miner in two commands)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from cli.errors import CliError, err_console, handle_errors, out_console
from cli.options import JsonOption

app = typer.Typer(no_args_is_help=True, help="Development wallets (bittensor wallet files, no password).")

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"


class CreatedWallet(msgspec.Struct, frozen=True, kw_only=True):
    """What `pylon wallet create --json` prints (public keys only)."""

    name: str
    hotkey: str
    path: str
    hotkey_ss58: str
    coldkey_ss58: str
    created: bool


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Option("--name", help="Wallet name.", show_default=False)],
    hotkey: Annotated[str, typer.Option("--hotkey", help="Hotkey name.")] = "default",
    path: Annotated[str, typer.Option("--path", help="Folder of bittensor wallets.")] = DEFAULT_WALLET_PATH,
    json_output: JsonOption = False,
) -> None:
    """Make a password-less development wallet (coldkey and hotkey) and print the hotkey's ss58 address.

    An existing hotkey is kept, never overwritten: its address is printed. Keys without a password are for
    development chains only; protect a real wallet's coldkey with `btcli wallet create`.
    """
    from bittensor_wallet import Wallet

    folder = Path(os.path.expanduser(path or DEFAULT_WALLET_PATH)).resolve()
    wallet = Wallet(name=name, hotkey=hotkey, path=str(folder))
    existed = wallet.hotkey_file.exists_on_device()
    try:
        # Each key only if missing (bittensor_wallet's create_if_non_existent prints on stdout otherwise).
        if not wallet.coldkeypub_file.exists_on_device():
            wallet.create_new_coldkey(use_password=False, overwrite=False, suppress=True)
        if not existed:
            wallet.create_new_hotkey(use_password=False, overwrite=False, suppress=True)
        result = CreatedWallet(
            name=name,
            hotkey=hotkey,
            path=str(folder),
            hotkey_ss58=str(wallet.hotkey.ss58_address),
            coldkey_ss58=str(wallet.coldkeypub.ss58_address),
            created=not existed,
        )
    except Exception as exc:
        # An existing wallet with a password, or a folder that is not writable.
        raise CliError(f"cannot create wallet {name!r} in {folder}: {exc}") from None
    if json_output:
        out_console.print_json(msgspec.json.encode(result).decode())
        return
    out_console.print(result.hotkey_ss58, highlight=False)
    what = "created" if result.created else "exists already"
    err_console.print(
        f"wallet {name!r} hotkey {hotkey!r} {what} in {folder}; on the development chain: "
        f"pylon localnet register {result.hotkey_ss58}",
        highlight=False,
        soft_wrap=True,
    )
