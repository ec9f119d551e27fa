"""The CLI's side of the development chain: finding the node of `pylon serve`, and progress on a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec

from cli.errors import err_console

if TYPE_CHECKING:
    from app.settings import Settings


def attach_dev_node(settings: Settings) -> Settings:
    """With `PYLON_NETWORK=local`, read the development chain through its node when one is up (and say so on
    stderr); alone, the command simulates its own copy of the chain as before."""
    devchain = settings.devchain
    if settings.chain.network != "local" or not devchain.node or devchain.node_url or not devchain.node_port:
        return settings
    from app.devchain.node.devnode import node_url, probe

    url = node_url(devchain.node_port)
    if not probe(url):
        return settings
    err_console.print(f"using the development chain served at {url}", highlight=False, soft_wrap=True)
    return msgspec.structs.replace(settings, devchain=msgspec.structs.replace(devchain, node_url=url))


def register_hint(settings: Settings, hotkey: str, netuid: int) -> str:
    """How to register `hotkey` on the network in use."""
    if settings.chain.network != "local":
        return f"btcli subnet register --netuid {netuid} --network {settings.chain.network}"
    if settings.devchain.node_url:
        return f"pylon localnet register {hotkey} --netuid {netuid}"
    # A private copy of the chain forgets a registration at exit: it needs the node.
    return f"start `pylon serve` (it serves the development chain), then `pylon localnet register {hotkey}`"


@contextlib.contextmanager
def progress(message: str, *, quiet: bool = False) -> Iterator[None]:
    """A Rich status line on stderr during long work; nothing with `--json` or when stdout is not a TTY."""
    if quiet or not sys.stdout.isatty() or not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield
