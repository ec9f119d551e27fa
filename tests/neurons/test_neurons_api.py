"""The neurons routes on the simulated subnet: shapes, errors, ETag/304, stale serving, readiness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bittensor_wallet import Keypair, Wallet
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.chain.client import hotkey_of
from app.devchain.client import SimulatedChainClient
from app.main import create_app
from tests.client import PylonTestClient
from tests.conftest import SettingsFactory, migrate

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "neurons-latest.json"
ALICE = Keypair.create_from_uri("//Alice")


@pytest.fixture
def chain_app(settings_factory: SettingsFactory) -> Litestar:
    # Blocks only when a test produces them; two subnets to tell netuids apart.
    settings = settings_factory(
        PYLON_LOCAL_BLOCK_TIME="3600", PYLON_LOCAL_NETUIDS="1,3", PYLON_NETUID="3", PYLON_LOCAL_NEURONS="256"
    )
    migrate(settings)
    return create_app(settings)


@pytest.fixture
async def api(chain_app: Litestar) -> AsyncIterator[AsyncTestClient]:
    async with PylonTestClient(app=chain_app) as client:
        client.headers["Authorization"] = f"Bearer {chain_app.state.settings.auth.admin_token}"
        yield client


def chain_of(api: AsyncTestClient) -> SimulatedChainClient:
    chain = api.app.state.chain
    assert isinstance(chain, SimulatedChainClient)
    return chain


def on_app_loop(api: AsyncTestClient, func, *args):  # type: ignore[no-untyped-def]
    """Run `func` on the app's event loop: the test client serves the app from its own thread."""
    return api.blocking_portal.call(func, *args)


async def next_block(api: AsyncTestClient) -> int:
    """Produce a block and wait until the metagraph cache has refreshed for it."""

    async def produce() -> int:
        head = await chain_of(api).produce_block()
        await asyncio.wait_for(api.app.state.metagraph.wait_for_head(head.number - 1), 5)
        return head.number

    number: int = on_app_loop(api, produce)
    return number


def shape(value: object) -> object:
    """Field names and JSON types, recursively (values differ; the contract is the shape)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


async def test_latest_neurons_has_bittensor_pylons_shape_and_follows_blocks(api: AsyncTestClient) -> None:
    response = await api.get("/api/v1/subnet/1/neurons/latest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert len(body["neurons"]) == 256
    hotkey, neuron = next(iter(body["neurons"].items()))
    assert neuron["hotkey"] == hotkey
    if REFERENCE.exists():
        reference = json.loads(REFERENCE.read_text())
        ref_neuron = next(iter(reference["neurons"].values()))
        assert shape(body["block"]) == shape(reference["block"])
        assert shape(neuron) == shape(ref_neuron)
    first = body["block"]["number"]
    assert response.headers["x-pylon-block"] == str(first)
    number = await next_block(api)
    again = (await api.get("/api/v1/subnet/1/neurons/latest")).json()
    assert again["block"]["number"] == number == first + 1
    assert again["block"]["hash"] != body["block"]["hash"]


async def test_etag_gives_304_until_the_next_block(api: AsyncTestClient) -> None:
    first = await api.get("/api/v1/subnet/1/neurons/latest")
    etag = first.headers["etag"]
    cached = await api.get("/api/v1/subnet/1/neurons/latest", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    await next_block(api)
    fresh = await api.get("/api/v1/subnet/1/neurons/latest", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag


async def test_neurons_at_a_block(api: AsyncTestClient) -> None:
    start = (await api.get("/api/v1/subnet/1/neurons/latest")).json()["block"]
    await next_block(api)
    old = await api.get(f"/api/v1/subnet/1/neurons/{start['number']}")
    assert old.status_code == 200 and old.json()["block"] == start
    assert old.headers["etag"]
    assert (
        await api.get(
            f"/api/v1/subnet/1/neurons/{start['number']}", headers={"If-None-Match": old.headers["etag"]}
        )
    ).status_code == 304


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/subnet/1/neurons/abc", 400, "block number"),
        ("/api/v1/subnet/1/neurons/-5", 400, "block number"),
        ("/api/v1/subnet/1/neurons/99999999", 404, "future"),
        ("/api/v1/subnet/1/neurons/5", 404, "block 5"),
        ("/api/v1/subnet/9/neurons/latest", 404, "subnet 9"),
        ("/api/v1/subnet/9/neurons/1000", 404, "subnet 9"),
        ("/api/v1/subnet/1/neurons/latest/5NotAHotkey", 404, "not registered"),
        ("/api/v1/subnet/9/hyperparams", 404, "subnet 9"),
        ("/api/v1/subnet/1/certificates/5NotAHotkey", 404, "no certificate"),
        ("/api/v1/neurons/abc", 400, "block number"),
    ],
)
async def test_error_cases(api: AsyncTestClient, path: str, status: int, message: str) -> None:
    response = await api.get(path)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status and message in body["detail"]


async def test_pruned_block_is_404(api: AsyncTestClient) -> None:
    chain = chain_of(api).chain
    chain.state_history = 2
    # Older latest metagraphs would otherwise answer from the LRU (correct data, but not what is tested).
    api.app.state.metagraph.lru_size = 0
    first = chain.head.number
    for _ in range(3):
        await next_block(api)
    response = await api.get(f"/api/v1/subnet/1/neurons/{first}")
    assert response.status_code == 404 and "pruned" in response.json()["detail"]


async def test_one_hotkey(api: AsyncTestClient) -> None:
    latest = (await api.get("/api/v1/subnet/1/neurons/latest")).json()
    hotkey, neuron = list(latest["neurons"].items())[7]
    response = await api.get(f"/api/v1/subnet/1/neurons/latest/{hotkey}")
    assert response.status_code == 200
    assert response.json() == {"block": latest["block"], "neuron": neuron}


async def test_default_netuid_routes_use_pylon_netuid(api: AsyncTestClient) -> None:
    short = (await api.get("/api/v1/neurons/latest")).json()
    subnet3 = (await api.get("/api/v1/subnet/3/neurons/latest")).json()
    subnet1 = (await api.get("/api/v1/subnet/1/neurons/latest")).json()
    assert short == subnet3 and short != subnet1
    block = short["block"]["number"]
    await next_block(api)
    at_block = await api.get(f"/api/v1/neurons/{block}")
    assert at_block.status_code == 200 and at_block.json() == subnet3


async def test_hyperparams(api: AsyncTestClient) -> None:
    response = await api.get("/api/v1/subnet/1/hyperparams")
    assert response.status_code == 200
    body = response.json()
    assert body["netuid"] == 1
    assert body["hyperparams"]["tempo"] == 360
    assert body["hyperparams"]["commit_reveal_weights_enabled"] is False
    assert {"weights_rate_limit", "max_weights_limit", "weights_version", "commit_reveal_period"} <= set(
        body["hyperparams"]
    )


async def test_certificates_and_self_certificate(api: AsyncTestClient) -> None:
    assert (await api.get("/api/v1/subnet/1/certificates")).json() == {}
    chain = chain_of(api)
    chain.chain.register(1, ALICE.ss58_address)
    api.app.state.wallet = ALICE
    on_app_loop(api, chain.set_block_time, 0.02)
    created = await api.post("/api/v1/subnet/1/certificates/self", json={"algorithm": 1})
    assert created.status_code == 201, created.text
    keypair = created.json()
    assert set(keypair) == {"algorithm", "public_key", "private_key"}
    on_app_loop(api, asyncio.wait_for, api.app.state.metagraph.wait_for_head(chain.chain.head.number), 5)
    expected = {"algorithm": 1, "public_key": keypair["public_key"]}
    assert (await api.get("/api/v1/subnet/1/certificates/self")).json() == expected
    assert (await api.get(f"/api/v1/subnet/1/certificates/{ALICE.ss58_address}")).json() == expected
    assert (await api.get("/api/v1/subnet/1/certificates")).json() == {ALICE.ss58_address: expected}
    bad = await api.post("/api/v1/subnet/1/certificates/self", json={"algorithm": 1, "extra": 1})
    assert bad.status_code == 400
    # Without a wallet (a real network and no PYLON_WALLET_NAME) the routes say so instead of failing.
    del api.app.state.wallet
    missing_wallet = await api.get("/api/v1/subnet/1/certificates/self")
    assert missing_wallet.status_code == 503 and "wallet" in missing_wallet.json()["detail"]


async def post_and_read_own_certificate(api: AsyncTestClient, netuid: int) -> dict[str, object]:
    """POST certificates/self, wait for the block that includes it, GET it back."""
    chain = chain_of(api)
    on_app_loop(api, chain.set_block_time, 0.02)
    created = await api.post(f"/api/v1/subnet/{netuid}/certificates/self", json={"algorithm": 1})
    assert created.status_code == 201, created.text
    on_app_loop(api, asyncio.wait_for, api.app.state.metagraph.wait_for_head(chain.chain.head.number), 5)
    own = await api.get(f"/api/v1/subnet/{netuid}/certificates/self")
    assert own.status_code == 200, own.text
    assert own.json() == {"algorithm": 1, "public_key": created.json()["public_key"]}
    body: dict[str, object] = own.json()
    return body


async def test_self_certificate_uses_the_dev_wallet_on_the_local_network(api: AsyncTestClient) -> None:
    # The weights lifespan puts the default identity's wallet (here the data dir's dev wallet) on app.state.
    weights = api.app.state.weights
    hotkey = weights.identities["default"].hotkey_ss58
    assert hotkey_of(api.app.state.wallet).ss58_address == hotkey
    none_yet = await api.get("/api/v1/subnet/1/certificates/self")
    assert none_yet.status_code == 404, none_yet.text
    assert hotkey in none_yet.json()["detail"]
    own = await post_and_read_own_certificate(api, 1)
    assert (await api.get("/api/v1/subnet/1/certificates")).json() == {hotkey: own}
    # Another subnet: the same wallet, no certificate there yet.
    assert (await api.get("/api/v1/subnet/3/certificates/self")).status_code == 404


async def test_self_certificate_uses_pylon_wallet_name(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    wallet = Wallet(name="validator", hotkey="hot", path=str(tmp_path / "wallets"))
    wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    settings = settings_factory(
        PYLON_LOCAL_BLOCK_TIME="3600",
        PYLON_WALLET_NAME="validator",
        PYLON_WALLET_HOTKEY="hot",
        PYLON_WALLET_PATH=str(tmp_path / "wallets"),
    )
    migrate(settings)
    app = create_app(settings)
    async with PylonTestClient(app=app) as api:
        api.headers["Authorization"] = f"Bearer {settings.auth.admin_token}"
        assert hotkey_of(app.state.wallet).ss58_address == wallet.hotkey.ss58_address
        own = await post_and_read_own_certificate(api, 1)
        by_hotkey = await api.get(f"/api/v1/subnet/1/certificates/{wallet.hotkey.ss58_address}")
        assert by_hotkey.json() == own


async def test_stale_serving_while_the_chain_is_down_and_ready_degraded(api: AsyncTestClient) -> None:
    warm = await api.get("/api/v1/subnet/1/neurons/latest")
    assert "x-pylon-stale" not in warm.headers
    ready = (await api.get("/ready")).json()
    assert ready["checks"]["chain"]["status"] == "ok"
    chain = chain_of(api)
    chain.unreachable = True
    api.app.state.metagraph.stale_after = 0.05
    on_app_loop(api, chain.produce_block)
    await asyncio.sleep(0.1)
    stale = await api.get("/api/v1/subnet/1/neurons/latest")
    assert stale.status_code == 200
    assert stale.content == warm.content
    assert stale.headers["x-pylon-stale"] == "true"
    assert int(stale.headers["age"]) >= 0
    assert stale.headers["x-pylon-block"] == warm.headers["x-pylon-block"]
    ready = await api.get("/ready")
    assert ready.status_code == 200
    chain_check = ready.json()["checks"]["chain"]
    assert chain_check["status"] == "degraded" and chain_check["data"]["head_age_seconds"] >= 0.05
    # Cold paths still fail fast with 503 rather than hanging.
    cold = await api.get("/api/v1/subnet/1/hyperparams")
    assert cold.status_code in (200, 503)
    chain.unreachable = False
    api.app.state.metagraph.stale_after = 60
    number = await next_block(api)
    recovered = await api.get("/api/v1/subnet/1/neurons/latest")
    assert recovered.json()["block"]["number"] == number
    assert "x-pylon-stale" not in recovered.headers
    assert (await api.get("/ready")).json()["checks"]["chain"]["status"] == "ok"


async def test_routes_declare_the_neurons_scope(chain_app: Litestar) -> None:
    for route in chain_app.litestar.routes:
        if route.path.startswith("/api/v1/") and (
            "neurons" in route.path or "certificates" in route.path or "hyperparams" in route.path
        ):
            for handler in route.route_handlers:  # type: ignore[attr-defined]
                if handler.http_methods == {"OPTIONS"}:
                    continue  # Litestar's automatic CORS preflight handler
                assert "scope" in handler.opt, route.path
