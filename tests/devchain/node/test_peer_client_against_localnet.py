"""bittensor-pylon's real client against `pylon serve` on `pylon localnet`: the same routes as tests/peer/,
read from a subtensor JSON-RPC node through the turbobt adapter (as on finney)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pylon_client.v1 import ASYNC_DEFAULT_RETRIES, AsyncConfig, AsyncPylonClient, BlockNumber, NetUid
from tenacity import stop_after_attempt

from tests.conftest import LiveServer

from .conftest import NodeThread, Wallets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OPEN = "open-token-localnet"
SN1 = "sn1-token-localnet"


def serve(localnet: NodeThread, wallets: Wallets, live_server_factory: Any) -> LiveServer:
    server: LiveServer = live_server_factory(
        PYLON_BITTENSOR_NETWORK=localnet.url,
        PYLON_ARCHIVE_NETWORK="",
        PYLON_NETUID="1",
        PYLON_CALL_TIMEOUT="20",
        PYLON_OPEN_ACCESS_TOKEN=OPEN,
        PYLON_BITTENSOR_WALLET_PATH=str(wallets.path),
        PYLON_IDENTITIES='["sn1"]',
        PYLON_ID_SN1_WALLET_NAME="validator",
        PYLON_ID_SN1_HOTKEY_NAME="default",
        PYLON_ID_SN1_NETUID="1",
        PYLON_ID_SN1_TOKEN=SN1,
    ).start(timeout=60)
    return server


def config(server: LiveServer) -> AsyncConfig:
    return AsyncConfig(
        address=server.url,
        open_access_token=OPEN,
        identity_name="sn1",
        identity_token=SN1,
        retry=ASYNC_DEFAULT_RETRIES.copy(stop=stop_after_attempt(1)),
    )


async def test_neurons_validators_and_blocks_come_from_the_node(
    localnet: NodeThread, wallets: Wallets, live_server_factory: Any
) -> None:
    server = serve(localnet, wallets, live_server_factory)
    async with AsyncPylonClient(config(server)) as client:
        latest = await client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        on_node = localnet.call(lambda node: {n.hotkey for n in node.chain.subnet(1).neurons})
        assert set(latest.neurons) == on_node
        mine = await client.v1.identity.get_latest_neurons()
        assert wallets.hotkey("validator") in mine.neurons
        validators = await client.v1.open_access.get_latest_validators(netuid=NetUid(1))
        stakes = [float(v.stakes.total) for v in validators.validators]
        assert stakes and stakes == sorted(stakes, reverse=True)
        block = await client.v1.open_access.get_latest_block_info()
        assert block.number >= latest.block.number
        at = await client.v1.open_access.get_neurons(NetUid(1), BlockNumber(block.number))
        assert at.block.number == block.number
        timestamp = localnet.call(lambda node: node.chain.block_timestamp(block.number))
        assert block.timestamp == timestamp


async def test_a_commitment_set_through_the_client_is_stored_by_the_node(
    localnet: NodeThread, wallets: Wallets, live_server_factory: Any
) -> None:
    server = serve(localnet, wallets, live_server_factory)
    data = b"pylon-localnet-commitment"
    async with AsyncPylonClient(config(server)) as client:
        await client.v1.identity.set_commitment(data)
        deadline = time.monotonic() + 20
        own = None
        while own is None and time.monotonic() < deadline:
            try:
                own = await client.v1.identity.get_own_commitment()
            except Exception:
                time.sleep(0.5)
        assert own is not None
        assert own.commitment == "0x" + data.hex()
        every = await client.v1.open_access.get_commitments(netuid=NetUid(1))
        assert every.commitments[wallets.hotkey("validator")] == "0x" + data.hex()
