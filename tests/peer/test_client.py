"""bittensor-pylon's real client (`bittensor-pylon-client` 2.3.1, unmodified) against `pylon serve`.

Every v1 request the client offers, checking content: blocks advance, validators are sorted, weights land
and their status reads true, commitments come back. The `_unstable` namespace is exercised where v1 has
no call for a resource (mechanism weights, status, prices, drand, revealed commitments).
"""

from __future__ import annotations

import time

import httpx
import pytest
from pylon_client.v1 import (
    ASYNC_DEFAULT_RETRIES,
    DEFAULT_RETRIES,
    AsyncConfig,
    AsyncPylonClient,
    BlockNumber,
    Config,
    Hotkey,
    NetUid,
    PylonClient,
    PylonForbidden,
    PylonMisconfigured,
    PylonNotFound,
    PylonUnauthorized,
    Weight,
)
from tenacity import stop_after_attempt

from tests.conftest import LiveServer
from tests.peer.conftest import IDENTITY_TOKEN, OPEN_TOKEN, OTHER_TOKEN

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def config_values(server: LiveServer, retry: object, **overrides: object) -> dict[str, object]:
    """The client's settings for this server: both tokens, the sn1 identity, one attempt per call."""
    values: dict[str, object] = {
        "address": server.url,
        "open_access_token": OPEN_TOKEN,
        "identity_name": "sn1",
        "identity_token": IDENTITY_TOKEN,
        "retry": retry,
    }
    return {**values, **overrides}


def async_config(server: LiveServer, **overrides: object) -> AsyncConfig:
    retry = ASYNC_DEFAULT_RETRIES.copy(stop=stop_after_attempt(1))
    return AsyncConfig(**config_values(server, retry, **overrides))  # type: ignore[arg-type]


def sync_config(server: LiveServer, **overrides: object) -> Config:
    retry = DEFAULT_RETRIES.copy(stop=stop_after_attempt(1))
    return Config(**config_values(server, retry, **overrides))  # type: ignore[arg-type]


def wait_for_block(server: LiveServer, number: int) -> None:
    """Until the server's chain is past `number` (a fresh server starts at its first block)."""
    deadline = time.monotonic() + 15
    auth = {"Authorization": f"Bearer {OPEN_TOKEN}"}
    while time.monotonic() < deadline:
        head = httpx.get(f"{server.url}/api/v1/subnet/1/block/latest/neurons", headers=auth)
        if head.status_code == 200 and int(head.headers["x-pylon-block"]) > number:
            return
        time.sleep(0.2)
    raise AssertionError(f"the chain did not pass block {number}")


async def test_the_readme_example_reads_neurons_and_sets_weights(peer_server: LiveServer) -> None:
    wait_for_block(peer_server, 1001)
    async with AsyncPylonClient(async_config(peer_server)) as client:
        latest = await client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        assert len(latest.neurons) == 256
        assert all(hotkey == neuron.hotkey for hotkey, neuron in latest.neurons.items())
        earlier = await client.v1.open_access.get_neurons(NetUid(1), BlockNumber(latest.block.number - 1))
        assert earlier.block.number == latest.block.number - 1
        assert earlier.block.hash != latest.block.hash

        mine = await client.v1.identity.get_latest_neurons()
        assert mine.block.number >= latest.block.number
        top = sorted(latest.neurons.values(), key=lambda n: n.stakes.total, reverse=True)[:3]
        weights = {Hotkey(n.hotkey): Weight(w) for n, w in zip(top, (0.5, 0.3, 0.2), strict=True)}
        await client.v1.identity.put_weights(weights=weights)

    # The job lands on the simulated chain: Pylon's own read of what was set names these hotkeys.
    deadline = time.monotonic() + 20
    admin = {"Authorization": "Bearer test-admin-token"}
    last = None
    while time.monotonic() < deadline:
        answer = httpx.get(f"{peer_server.url}/api/v1/subnet/1/weights/last?identity=sn1", headers=admin)
        if answer.status_code == 200:
            last = answer.json()
            break
        time.sleep(0.3)
    assert last is not None, "the weights job did not land"
    assert set(last["weights"]) == set(weights)


async def test_latest_neurons_advance_and_match_the_routed_latest_route(peer_server: LiveServer) -> None:
    async with AsyncPylonClient(async_config(peer_server)) as client:
        first = await client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        deadline = time.monotonic() + 10
        later = first
        while later.block.number <= first.block.number and time.monotonic() < deadline:
            time.sleep(0.2)
            later = await client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        assert later.block.number > first.block.number
        recent = await client.v1.open_access.get_recent_neurons(netuid=NetUid(1))
        assert recent.block.number >= later.block.number
    own = httpx.get(
        f"{peer_server.url}/api/v1/subnet/1/neurons/latest", headers={"Authorization": f"Bearer {OPEN_TOKEN}"}
    )
    peer = httpx.get(
        f"{peer_server.url}/api/v1/subnet/1/block/latest/neurons",
        headers={"Authorization": f"Bearer {OPEN_TOKEN}"},
    )
    # Same cached bytes, so the same ETag whenever both read the same block.
    if own.headers["x-pylon-block"] == peer.headers["x-pylon-block"]:
        assert own.content == peer.content
        assert own.headers["etag"] == peer.headers["etag"]


async def test_validators_are_permit_holders_highest_stake_first(peer_server: LiveServer) -> None:
    async with AsyncPylonClient(async_config(peer_server)) as client:
        latest = await client.v1.open_access.get_latest_validators(netuid=NetUid(1))
        assert latest.validators
        assert all(v.validator_permit for v in latest.validators)
        stakes = [float(v.stakes.total) for v in latest.validators]
        assert stakes == sorted(stakes, reverse=True)
        neurons = await client.v1.open_access.get_neurons(NetUid(1), latest.block.number)
        assert {v.hotkey for v in latest.validators} == {
            n.hotkey for n in neurons.neurons.values() if n.validator_permit
        }
        at = await client.v1.identity.get_validators(BlockNumber(latest.block.number))
        assert [v.hotkey for v in at.validators] == [v.hotkey for v in latest.validators]


async def test_block_info_and_extrinsics(peer_server: LiveServer) -> None:
    async with AsyncPylonClient(async_config(peer_server)) as client:
        first = await client.v1.open_access.get_latest_block_info()
        time.sleep(1.2)
        second = await client.v1.open_access.get_latest_block_info()
        assert second.number > first.number
        assert second.timestamp > first.timestamp
        inherent = await client.v1.open_access.get_extrinsic(second.number, 0)
        assert inherent.block_number == second.number
        assert inherent.call.call_module == "Timestamp"
        assert inherent.address is None
        with pytest.raises(PylonNotFound):
            await client.v1.open_access.get_extrinsic(second.number, 10_000)


async def test_a_commitment_set_through_the_identity_comes_back(peer_server: LiveServer) -> None:
    data = bytes.fromhex("c0ffee00" * 4)
    async with AsyncPylonClient(async_config(peer_server)) as client:
        await client.v1.identity.set_commitment(data)
        own = await client.v1.identity.get_own_commitment()
        assert own.commitment == "0x" + data.hex()
        hotkey = own.hotkey
        every = await client.v1.open_access.get_commitments(netuid=NetUid(1))
        assert every.commitments[hotkey] == "0x" + data.hex()
        one = await client.v1.open_access.get_commitment(NetUid(1), hotkey)
        assert one.commitment_block_number == own.commitment_block_number
        assert one.commitment_block_number <= one.block.number
        unstable = await client.unstable.open_access.get_commitment(NetUid(1), hotkey)
        assert unstable.commitment.kind == "hex_data"
        with pytest.raises(PylonNotFound):
            await client.v1.open_access.get_commitment(NetUid(1), Hotkey("5" + "x" * 47))


async def test_prices_move_and_cover_the_subnets(peer_server: LiveServer) -> None:
    wait_for_block(peer_server, 1001)
    async with AsyncPylonClient(async_config(peer_server)) as client:
        prices = await client.unstable.open_access.get_latest_prices()
        assert {1, 2} <= set(prices.prices)
        one = await client.unstable.open_access.get_latest_price(NetUid(1))
        assert one.netuid == 1
        assert int(one.price.value) > 0
        earlier = await client.unstable.open_access.get_prices(BlockNumber(prices.block.number - 1))
        assert earlier.block.number == prices.block.number - 1


async def test_mechanism_weights_and_their_status(peer_server: LiveServer) -> None:
    async with AsyncPylonClient(async_config(peer_server)) as client:
        latest = await client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        hotkeys = [Hotkey(h) for h in list(latest.neurons)[10:14]]
        await client.unstable.identity.put_weights(mechanism_id=0, weights={h: Weight(1.0) for h in hotkeys})
        deadline = time.monotonic() + 20
        submitted = False
        while not submitted and time.monotonic() < deadline:
            head = await client.v1.open_access.get_latest_block_info()
            status = await client.unstable.identity.get_weights_status(
                mechanism_id=0, block_number=head.number
            )
            submitted = status.weights_submitted
            time.sleep(0.3)
        assert submitted
        with pytest.raises(PylonNotFound):
            await client.unstable.identity.put_weights(mechanism_id=1, weights={hotkeys[0]: Weight(1.0)})


async def test_identities_are_listed_with_their_subnets(peer_server: LiveServer) -> None:
    listed = httpx.get(f"{peer_server.url}/api/v1/identities").json()
    assert listed["identities"]["sn1"] == 1
    assert listed["identities"]["sn2"] == 2
    # The second identity reads its own subnet.
    async with AsyncPylonClient(
        async_config(peer_server, identity_name="sn2", identity_token=OTHER_TOKEN)
    ) as c:
        neurons = await c.v1.identity.get_latest_neurons()
        assert len(neurons.neurons) == 256


def test_the_sync_client_reads_and_writes(peer_server: LiveServer) -> None:
    with PylonClient(sync_config(peer_server)) as client:
        latest = client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
        assert len(latest.neurons) == 256
        at = client.v1.identity.get_neurons(BlockNumber(latest.block.number))
        assert at.block == latest.block
        validators = client.v1.identity.get_latest_validators()
        assert validators.validators
        commitments = client.v1.open_access.get_commitments(netuid=NetUid(1))
        assert commitments.block.number >= latest.block.number
        hotkey = next(iter(latest.neurons))
        client.v1.identity.put_weights(weights={Hotkey(hotkey): Weight(1.0)})


def test_credentials_are_refused_as_the_client_expects(peer_server: LiveServer) -> None:
    with (
        PylonClient(sync_config(peer_server, identity_token="not-the-token")) as client,
        pytest.raises(PylonForbidden),
    ):
        client.v1.identity.get_latest_neurons()
    # sn2's token is a real token, but not sn1's.
    with (
        PylonClient(sync_config(peer_server, identity_token=OTHER_TOKEN)) as client,
        pytest.raises(PylonForbidden),
    ):
        client.v1.identity.get_latest_neurons()
    # The client looks the identity up first; the server's own answer for it is 404.
    with (
        PylonClient(sync_config(peer_server, identity_name="nobody")) as client,
        pytest.raises(PylonMisconfigured),
    ):
        client.v1.identity.get_latest_neurons()
    unknown = httpx.get(
        f"{peer_server.url}/api/v1/identity/nobody/subnet/1/block/latest/neurons",
        headers={"Authorization": f"Bearer {IDENTITY_TOKEN}"},
    )
    assert unknown.status_code == 404
    with (
        PylonClient(sync_config(peer_server, open_access_token="wrong")) as client,
        pytest.raises(PylonUnauthorized),
    ):
        client.v1.open_access.get_latest_neurons(netuid=NetUid(1))
    # No credential at all: 401.
    answer = httpx.get(f"{peer_server.url}/api/v1/subnet/1/block/latest/neurons")
    assert answer.status_code == 401
    assert answer.json()["detail"]


def test_a_full_validator_view_one_block_stale_is_accepted(peer_server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {IDENTITY_TOKEN}"}
    neurons = httpx.get(f"{peer_server.url}/api/v1/subnet/1/block/latest/neurons", headers=auth).json()
    weights = {hotkey: 1.0 for hotkey in neurons["neurons"]}
    weights["5FakeHotkeyThatJustLeftTheSubnet1111111111111111"] = 0.5
    answer = httpx.put(
        f"{peer_server.url}/api/v1/identity/sn1/subnet/1/weights", headers=auth, json={"weights": weights}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["count"] == 257
    assert body["skipped_hotkeys"] == ["5FakeHotkeyThatJustLeftTheSubnet1111111111111111"]


def test_x_pylon_timeout_is_checked(peer_server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {OPEN_TOKEN}"}
    url = f"{peer_server.url}/api/v1/subnet/1/block/latest/neurons"
    for bad in ("soon", "-1", "0", "nan", "inf"):
        answer = httpx.get(url, headers={**auth, "X-Pylon-Timeout": bad})
        assert answer.status_code == 400, bad
        assert "X-Pylon-Timeout" in answer.json()["detail"]
    assert httpx.get(url, headers={**auth, "X-Pylon-Timeout": "2.5"}).status_code == 200


def test_the_one_x_login_still_works(peer_server: LiveServer) -> None:
    login = f"{peer_server.url}/api/v1/login/identity/sn1"
    answer = httpx.post(login, json={"token": IDENTITY_TOKEN})
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"netuid": 1, "identity_name": "sn1"}
    assert httpx.post(login, json={"token": "wrong"}).status_code == 403
    assert (
        httpx.post(f"{peer_server.url}/api/v1/login/identity/nobody", json={"token": "x"}).status_code == 404
    )
