"""One `pylon serve` for the bittensor-pylon client tests, configured the way bittensor-pylon is: an
open-access token and an identity from `PYLON_IDENTITIES=["sn1"]` / `PYLON_ID_SN1_*`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bittensor_wallet import Wallet

from tests.conftest import LiveServer, base_env, free_port

OPEN_TOKEN = "open-access-token-for-tests"
IDENTITY_TOKEN = "sn1-identity-token-for-tests"
OTHER_TOKEN = "sn2-identity-token-for-tests"


def make_wallet(folder: Path, name: str) -> Wallet:
    wallet = Wallet(name=name, hotkey="default", path=str(folder))
    wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    return wallet


@pytest.fixture(scope="module")
def peer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("peer")
    wallets = root / "wallets"
    make_wallet(wallets, "validator")
    make_wallet(wallets, "other")
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    inherited.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env = {
        **inherited,
        **base_env(root / "data"),
        "PYLON_LOCAL_BLOCK_TIME": "0.5",
        "PYLON_LOCAL_NETUIDS": "1,2",
        "PYLON_OPEN_ACCESS_TOKEN": OPEN_TOKEN,
        "PYLON_BITTENSOR_WALLET_PATH": str(wallets),
        "PYLON_IDENTITIES": '["sn1", "sn2"]',
        "PYLON_ID_SN1_WALLET_NAME": "validator",
        "PYLON_ID_SN1_HOTKEY_NAME": "default",
        "PYLON_ID_SN1_NETUID": "1",
        "PYLON_ID_SN1_TOKEN": IDENTITY_TOKEN,
        "PYLON_ID_SN2_WALLET_NAME": "other",
        "PYLON_ID_SN2_HOTKEY_NAME": "default",
        "PYLON_ID_SN2_NETUID": "2",
        "PYLON_ID_SN2_TOKEN": OTHER_TOKEN,
    }
    server = LiveServer(env, free_port(), root / "serve.log").start()
    yield server
    server.stop()
