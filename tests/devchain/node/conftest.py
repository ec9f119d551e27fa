"""A `pylon localnet` node on a free port, in its own thread and event loop, and bittensor wallets on disk.

The node runs apart from the test's loop so that blocking callers (the CLI, `pylon serve` subprocesses) and
async callers (turbobt, the turbobt adapter) reach it the same way: over loopback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.chain.client import SubnetHyperparams
from app.chain.turbobt import TurbobtChainClient
from app.devchain.node.codec import SHIPPED_RUNTIME, Runtime, read_recorded
from app.devchain.node.node import LocalNode, build_node
from app.devchain.node.server import LocalnetServer

T = TypeVar("T")
BLOCK_TIME = 0.5


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    # The runtime shipped with Pylon, whatever PYLON_CHAIN_METADATA_DIR says.
    return Runtime(*read_recorded(resources.files(SHIPPED_RUNTIME)))


class Wallets:
    def __init__(self, path: Path) -> None:
        from bittensor_wallet import Wallet

        self.path = path
        self.made: dict[str, Wallet] = {}
        for name in ("validator", "miner", "stranger"):
            wallet = Wallet(name=name, hotkey="default", path=str(path))
            wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
            wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
            self.made[name] = wallet

    def __getitem__(self, name: str) -> Any:
        return self.made[name]

    def hotkey(self, name: str) -> str:
        return str(self.made[name].hotkey.ss58_address)


@pytest.fixture(scope="session")
def wallets(tmp_path_factory: pytest.TempPathFactory) -> Wallets:
    return Wallets(tmp_path_factory.mktemp("wallets"))


class NodeThread:
    """The node and its server on a private event loop; `call(fn)` runs `fn(node)` on that loop."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.server = LocalnetServer(node, port=0)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="localnet", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await self.server.start()
            self._ready.set()
            await self._stop.wait()
            await self.server.stop()

        self.loop.run_until_complete(main())

    def start(self) -> NodeThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("localnet did not start")
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, fn: Callable[[LocalNode], T]) -> T:
        async def run() -> T:
            return fn(self.node)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def localnet(runtime: Runtime, wallets: Wallets) -> Iterator[NodeThread]:
    node = build_node(
        runtime,
        netuids=[1],
        neurons=16,
        seed=7,
        block_time=BLOCK_TIME,
        register=[wallets.hotkey("miner")],
        validators=[wallets.hotkey("validator")],
        hyperparams=SubnetHyperparams(tempo=360, weights_rate_limit=100),
    )
    thread = NodeThread(node).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
async def adapter(localnet: NodeThread) -> Any:
    client = TurbobtChainClient(localnet.url, archive_network=None, call_timeout=20, extrinsic_timeout=30)
    try:
        yield client
    finally:
        await client.close()
