"""bittensor-pylon's API in process: hot identity paths, X-Pylon-Timeout's 504, the 308 for a netuid the
identity does not work on, and the OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import SettingsFactory
from tests.keys.helpers import create_key
from tests.neurons.test_hot_route import Recorder, recording
from tests.peer.conftest import IDENTITY_TOKEN, OPEN_TOKEN, OTHER_TOKEN, make_wallet

SN1 = {"Authorization": f"Bearer {IDENTITY_TOKEN}"}
SN2 = {"Authorization": f"Bearer {OTHER_TOKEN}"}
OPEN = {"Authorization": f"Bearer {OPEN_TOKEN}"}


@pytest.fixture
async def peer(
    settings_factory: SettingsFactory, tmp_path: Path
) -> AsyncIterator[tuple[AsyncTestClient, Recorder]]:
    make_wallet(tmp_path / "wallets", "validator")
    make_wallet(tmp_path / "wallets", "other")
    settings = settings_factory(
        PYLON_LOCAL_BLOCK_TIME="3600",
        PYLON_LOCAL_NEURONS="16",
        PYLON_LOCAL_NETUIDS="1,2",
        PYLON_OPEN_ACCESS_TOKEN=OPEN_TOKEN,
        PYLON_BITTENSOR_WALLET_PATH=str(tmp_path / "wallets"),
        PYLON_IDENTITIES="sn1,sn2",
        PYLON_ID_SN1_WALLET_NAME="validator",
        PYLON_ID_SN1_NETUID="1",
        PYLON_ID_SN1_TOKEN=IDENTITY_TOKEN,
        PYLON_ID_SN2_WALLET_NAME="other",
        PYLON_ID_SN2_NETUID="2",
        PYLON_ID_SN2_TOKEN=OTHER_TOKEN,
    )
    async with recording(settings) as recorded:
        yield recorded


async def test_latest_neurons_are_hot_on_every_base(peer: Any) -> None:
    client, recorder = peer
    paths = [
        ("/api/v1/subnet/1/block/latest/neurons", OPEN),
        ("/api/_unstable/openaccess/subnet/1/block/latest/neurons", OPEN),
        ("/api/v1/identity/sn1/subnet/1/block/latest/neurons", SN1),
        ("/api/_unstable/identity/sn1/subnet/1/block/latest/neurons", SN1),
    ]
    warm = await client.get("/api/v1/subnet/1/neurons/latest", headers=OPEN)
    assert warm.status_code == 200
    for path, auth in paths:
        recorder.routed.clear()
        answer = await client.get(path, headers=auth)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.content == warm.content
        assert recorder.routed == [False], path


async def test_identity_refusals_are_left_to_the_routed_path(peer: Any) -> None:
    client, recorder = peer
    await client.get("/api/v1/subnet/1/neurons/latest", headers=OPEN)
    cases = [
        ("/api/v1/identity/sn1/subnet/1/block/latest/neurons", SN2, 403),
        ("/api/v1/identity/sn1/subnet/1/block/latest/neurons", OPEN, 403),
        ("/api/v1/identity/sn1/subnet/1/block/latest/neurons", {"Authorization": "Bearer nonsense"}, 403),
        ("/api/v1/identity/nobody/subnet/1/block/latest/neurons", SN1, 404),
        ("/api/v1/identity/sn1/subnet/1/block/latest/neurons", {}, 401),
        ("/api/v1/subnet/1/block/latest/neurons", {"Authorization": "Bearer nonsense"}, 401),
    ]
    for path, auth, status in cases:
        recorder.routed.clear()
        answer = await client.get(path, headers=auth)
        assert answer.status_code == status, (path, auth, answer.text)
        assert answer.json()["detail"]
        assert recorder.routed == [True]


async def test_a_netuid_the_identity_does_not_work_on_is_a_308_to_its_own(peer: Any) -> None:
    client, _ = peer
    answer = await client.get(
        "/api/v1/identity/sn2/subnet/1/block/latest/validators", headers=SN2, follow_redirects=False
    )
    assert answer.status_code == 308
    assert answer.headers["location"] == "/api/v1/identity/sn2/subnet/2/block/latest/validators"
    followed = await client.get(answer.headers["location"], headers=SN2)
    assert followed.status_code == 200
    assert followed.json()["validators"]


async def test_a_request_past_its_x_pylon_timeout_is_504(peer: Any) -> None:
    client, _ = peer
    state = client.app.app.state
    assert (await client.get("/api/v1/subnet/1/block/latest/neurons", headers=OPEN)).status_code == 200
    state.chain.delay = 1.0
    try:
        # Certificates are read from the (slow) chain on every request.
        slow = await client.get(
            "/api/v1/subnet/1/block/latest/certificates", headers={**OPEN, "X-Pylon-Timeout": "0.2"}
        )
        # Served from the cache, the latest neurons never wait for the chain.
        fast = await client.get(
            "/api/v1/subnet/1/block/latest/neurons", headers={**OPEN, "X-Pylon-Timeout": "0.2"}
        )
        patient = await client.get(
            "/api/v1/subnet/1/block/latest/certificates", headers={**OPEN, "X-Pylon-Timeout": "5"}
        )
    finally:
        state.chain.delay = 0.0
    assert slow.status_code == 504, slow.text[:300]
    assert "X-Pylon-Timeout" in slow.json()["detail"]
    assert slow.headers["x-request-id"]
    assert fast.status_code == 200
    assert patient.status_code == 200, patient.text[:300]
    assert isinstance(patient.json(), dict)


async def test_the_schema_documents_the_peer_routes(peer: Any) -> None:
    client, _ = peer
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/subnet/{netuid}/block/latest/validators" in paths
    assert "/api/_unstable/identity/{identity_name}/subnet/{netuid}/mechanism/{mechanism_id}/weights" in paths


async def test_api_keys_act_as_the_identity_they_are_bound_to(peer: Any) -> None:
    client, _ = peer
    plain = (await create_key(client, ["neurons:read"]))["key"]
    bound = (await create_key(client, ["neurons:read", "weights:write"], identity="sn1"))["key"]
    cases = [
        ("/api/v1/identity/default/subnet/1/block/latest/validators", plain, 200),
        ("/api/v1/identity/sn1/subnet/1/block/latest/validators", plain, 403),
        ("/api/v1/identity/sn1/subnet/1/block/latest/validators", bound, 200),
        ("/api/v1/identity/default/subnet/1/block/latest/validators", bound, 403),
        # The open-access token is no identity's, not even the default one's.
        ("/api/v1/identity/default/subnet/1/block/latest/validators", OPEN_TOKEN, 403),
    ]
    for path, key, status in cases:
        answer = await client.get(path, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == status, (path, answer.text[:200])
