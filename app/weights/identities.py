"""Identities: the wallets Pylon signs weights with.

`default` is the single-wallet case (`PYLON_WALLET_*`); named identities come from `PYLON_IDENTITIES`.
With `PYLON_NETWORK=local` and no `PYLON_WALLET_NAME`, a password-less dev wallet is created in the data dir
on first start so weights work out of the box; that never happens for a real network.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from bittensor_wallet import Wallet

from app.settings import DEFAULT_IDENTITY, Settings

log = structlog.get_logger(__name__)

DEV_WALLET_NAME = "pylon-dev"
DEV_WALLET_HOTKEY = "default"
LOCAL_NETWORK = "local"


class IdentityError(Exception):
    """An identity's wallet cannot be loaded; the message says which identity and which file."""


@dataclass(frozen=True)
class Identity:
    """A named wallet and the subnets it may set weights on (None: any)."""

    name: str
    wallet: Wallet
    netuids: frozenset[int] | None

    @property
    def hotkey_ss58(self) -> str:
        return str(self.wallet.hotkey.ss58_address)

    @property
    def keypair(self) -> Any:
        """The hotkey's keypair: it signs set/commit weights extrinsics."""
        return self.wallet.hotkey

    def allows_netuid(self, netuid: int) -> bool:
        return self.netuids is None or netuid in self.netuids


def dev_wallet_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "wallets"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Several granian workers start at once; only one may write the dev wallet's files.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_dev_wallet(settings: Settings) -> Wallet:
    """Create (once) the password-less dev wallet in the data dir. Refused for any real network."""
    if settings.chain.network != LOCAL_NETWORK:
        raise IdentityError(
            f"refusing to create a password-less dev wallet for network {settings.chain.network!r}: "
            "set PYLON_WALLET_NAME (and PYLON_WALLET_HOTKEY, PYLON_WALLET_PATH) to your validator's wallet"
        )
    path = dev_wallet_dir(settings)
    wallet = Wallet(name=DEV_WALLET_NAME, hotkey=DEV_WALLET_HOTKEY, path=str(path))
    with _file_lock(path / ".create.lock"):
        if not wallet.hotkey_file.exists_on_device():
            wallet.create_if_non_existent(
                coldkey_use_password=False, hotkey_use_password=False, suppress=True
            )
            log.info("dev_wallet_created", path=str(path), hotkey=str(wallet.hotkey.ss58_address))
    return wallet


def _load(name: str, wallet_name: str, hotkey: str, path: str, netuids: list[int] | None) -> Identity:
    kwargs: dict[str, str] = {"name": wallet_name, "hotkey": hotkey}
    if path:
        kwargs["path"] = str(Path(path).expanduser())
    wallet = Wallet(**kwargs)
    try:
        # Reading the hotkey now fails at start, not at the first PUT, when the file is missing or locked.
        wallet.hotkey.ss58_address  # noqa: B018
    except Exception as exc:
        raise IdentityError(
            f"identity {name!r}: cannot read hotkey {hotkey!r} of wallet {wallet_name!r} in "
            f"{kwargs.get('path', '~/.bittensor/wallets')}: {exc}"
        ) from exc
    return Identity(name=name, wallet=wallet, netuids=frozenset(netuids) if netuids is not None else None)


def identity_names(settings: Settings) -> set[str]:
    """The names `load_identities` gives, without opening a wallet (what the CLI checks a key against)."""
    names = {item.name for item in settings.identities}
    if settings.wallet.name or settings.chain.network == LOCAL_NETWORK:
        names.add(DEFAULT_IDENTITY)
    return names


def load_identities(settings: Settings) -> dict[str, Identity]:
    """Every configured identity by name; `default` is absent on a real network without PYLON_WALLET_NAME."""
    identities: dict[str, Identity] = {}
    if settings.wallet.name:
        identities[DEFAULT_IDENTITY] = _load(
            DEFAULT_IDENTITY, settings.wallet.name, settings.wallet.hotkey, settings.wallet.path, None
        )
    elif settings.chain.network == LOCAL_NETWORK:
        wallet = ensure_dev_wallet(settings)
        identities[DEFAULT_IDENTITY] = Identity(name=DEFAULT_IDENTITY, wallet=wallet, netuids=None)
    for item in settings.identities:
        identities[item.name] = _load(
            item.name, item.wallet_name, item.wallet_hotkey, item.wallet_path, item.netuids
        )
    return identities
