"""Epistula v2: the verifier on its own, then through the guard on a route that accepts signatures."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bittensor_wallet import Keypair
from litestar import Request, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from app.auth.epistula import (
    EpistulaVerifier,
    HotkeyInfo,
    StaticHotkeyDirectory,
    sign_request,
    signed_message,
)
from app.auth.refusal import Refused
from app.auth.scopes import Scope
from app.http.context import principal_of
from app.settings import EpistulaSettings, Settings
from tests.client import PylonTestClient
from tests.keys.helpers import ADMIN, bearer, create_key, make_wallet


def new_keypair() -> Keypair:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


PYLON = new_keypair()
VALIDATOR = new_keypair()
STRANGER = new_keypair()


class FakeDirectory:
    def __init__(self, hotkeys: dict[str, HotkeyInfo]) -> None:
        self.hotkeys = hotkeys
        self.asked: list[tuple[int, str]] = []

    async def lookup(self, netuid: int, hotkey: str) -> HotkeyInfo | None:
        self.asked.append((netuid, hotkey))
        return self.hotkeys.get(hotkey)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier(clock: Clock, **overrides: Any) -> EpistulaVerifier:
    settings = EpistulaSettings(hotkey=PYLON.ss58_address, netuid=7, **overrides)
    return EpistulaVerifier(settings, default_netuid=1, clock=clock)


DIRECTORY = FakeDirectory({VALIDATOR.ss58_address: HotkeyInfo(validator_permit=True, stake=5000.0)})


def signed(body: bytes, clock: Clock, keypair: Keypair = VALIDATOR, **kwargs: Any) -> dict[str, str]:
    headers = sign_request(
        keypair,
        body,
        kwargs.pop("signed_for", PYLON.ss58_address),
        timestamp_ms=int(clock.now * 1000),
        **kwargs,
    )
    return {k.lower(): v for k, v in headers.items()}


async def test_valid_signature_is_accepted(clock: Clock) -> None:
    body = b'{"model": "m"}'
    directory = FakeDirectory(DIRECTORY.hotkeys)
    assert await verifier(clock).verify(signed(body, clock), body, directory) == VALIDATOR.ss58_address
    assert directory.asked == [(7, VALIDATOR.ss58_address)]


async def test_empty_body_signs_the_hash_of_nothing(clock: Clock) -> None:
    headers = signed(b"", clock)
    message = signed_message(b"", headers["epistula-uuid"], headers["epistula-timestamp"], PYLON.ss58_address)
    assert message.startswith("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.")
    assert await verifier(clock).verify(headers, b"", DIRECTORY) == VALIDATOR.ss58_address


async def test_signature_from_a_wallet_on_disk(tmp_path: Path, clock: Clock) -> None:
    wallet = make_wallet(tmp_path, "validator")
    directory = FakeDirectory({wallet.hotkey.ss58_address: HotkeyInfo()})
    body = b"{}"
    headers = signed(body, clock, keypair=wallet.hotkey)
    assert await verifier(clock).verify(headers, body, directory) == wallet.hotkey.ss58_address


async def expect(
    status: int, fragment: str, clock: Clock, headers: dict[str, str], body: bytes, **kw: Any
) -> None:
    with pytest.raises(Refused) as caught:
        await verifier(clock, **kw).verify(headers, body, DIRECTORY)
    assert caught.value.status_code == status, caught.value.refusal.detail
    assert fragment in caught.value.refusal.detail


async def test_tampered_body_is_refused(clock: Clock) -> None:
    headers = signed(b'{"a": 1}', clock)
    await expect(401, "signature does not match", clock, headers, b'{"a": 2}')


async def test_tampered_headers_are_refused(clock: Clock) -> None:
    headers = signed(b"{}", clock)
    await expect(
        401, "signature does not match", clock, {**headers, "epistula-uuid": str(uuid.uuid4())}, b"{}"
    )
    later = str(int(headers["epistula-timestamp"]) + 1)
    await expect(401, "signature does not match", clock, {**headers, "epistula-timestamp": later}, b"{}")
    # Someone else claiming the signature.
    await expect(
        401,
        "signature does not match",
        clock,
        {**headers, "epistula-signed-by": STRANGER.ss58_address},
        b"{}",
    )


async def test_wrong_signed_for_is_refused(clock: Clock) -> None:
    headers = signed(b"{}", clock, signed_for=STRANGER.ss58_address)
    await expect(401, "signed for another hotkey", clock, headers, b"{}")


@pytest.mark.parametrize(("offset", "word"), [(-9.0, "old"), (9.0, "future")])
async def test_timestamps_outside_the_window_are_refused(clock: Clock, offset: float, word: str) -> None:
    headers = signed(b"{}", clock)
    clock.now -= offset
    await expect(401, word, clock, headers, b"{}")


async def test_window_is_configurable(clock: Clock) -> None:
    headers = signed(b"{}", clock)
    clock.now += 20
    assert await verifier(clock, window=30.0).verify(headers, b"{}", DIRECTORY)


async def test_replay_is_refused_within_twice_the_window(clock: Clock) -> None:
    check = verifier(clock)
    headers = signed(b"{}", clock)
    assert await check.verify(headers, b"{}", DIRECTORY)
    with pytest.raises(Refused) as caught:
        await check.verify(headers, b"{}", DIRECTORY)
    assert caught.value.status_code == 401 and "replayed" in caught.value.detail
    # Entries expire after 2 x window, by which time the timestamp itself is stale.
    clock.now += 17
    assert len(check.replay) == 1
    await expect(401, "old", clock, headers, b"{}")
    check.replay.check_and_remember("x", "y", clock.now)
    assert len(check.replay) == 1


async def test_replay_set_is_bounded(clock: Clock) -> None:
    check = verifier(clock, replay_capacity=2)
    for _ in range(2):
        assert await check.verify(signed(b"{}", clock), b"{}", DIRECTORY)
    with pytest.raises(Refused) as caught:
        await check.verify(signed(b"{}", clock), b"{}", DIRECTORY)
    assert caught.value.status_code == 429
    clock.now += 17
    assert await check.verify(signed(b"{}", clock), b"{}", DIRECTORY)


async def test_unregistered_signer_is_refused(clock: Clock) -> None:
    await expect(403, "not registered on netuid 7", clock, signed(b"{}", clock, keypair=STRANGER), b"{}")


async def test_validator_permit_and_stake_can_be_required(clock: Clock) -> None:
    low = new_keypair()
    directory = FakeDirectory(
        {
            VALIDATOR.ss58_address: HotkeyInfo(validator_permit=True, stake=5000.0),
            low.ss58_address: HotkeyInfo(validator_permit=False, stake=10.0),
        }
    )
    strict = verifier(clock, require_validator_permit=True)
    assert await strict.verify(signed(b"{}", clock), b"{}", directory)
    with pytest.raises(Refused, match="no validator permit"):
        await strict.verify(signed(b"{}", clock, keypair=low), b"{}", directory)
    staked = verifier(clock, min_stake=1000.0)
    assert await staked.verify(signed(b"{}", clock), b"{}", directory)
    with pytest.raises(Refused, match="below the minimum"):
        await staked.verify(signed(b"{}", clock, keypair=low), b"{}", directory)


def malformed_cases() -> Iterator[tuple[str, Any, str]]:
    yield "epistula-version", "1", "unsupported Epistula-Version"
    yield "epistula-version", None, "unsupported Epistula-Version"
    yield "epistula-uuid", None, "missing Epistula headers: Epistula-Uuid"
    yield "epistula-signed-by", None, "Epistula-Signed-By"
    yield "epistula-timestamp", "yesterday", "milliseconds"
    yield "epistula-uuid", "not-a-uuid", "not a UUID"
    yield "epistula-request-signature", "0x1234", "128 hex"
    yield "epistula-request-signature", "zz" * 65, "128 hex"
    yield "epistula-signed-by", "5notanaddress", "not a valid ss58"


@pytest.mark.parametrize(("header", "value", "fragment"), list(malformed_cases()))
async def test_malformed_headers_are_400(clock: Clock, header: str, value: str | None, fragment: str) -> None:
    headers = signed(b"{}", clock)
    if value is None:
        headers.pop(header)
    else:
        headers[header] = value
    await expect(400, fragment, clock, headers, b"{}")


async def test_secret_signature_headers_are_ignored(clock: Clock) -> None:
    headers = {**signed(b"{}", clock), "epistula-secret-signature-0": "0xdeadbeef"}
    assert await verifier(clock).verify(headers, b"{}", DIRECTORY)


async def test_disabled_without_own_hotkey(clock: Clock) -> None:
    check = EpistulaVerifier(EpistulaSettings(), default_netuid=1, clock=clock)
    with pytest.raises(Refused, match="PYLON_EPISTULA_HOTKEY"):
        await check.verify(signed(b"{}", clock), b"{}", DIRECTORY)


def test_static_directory_reads_settings() -> None:
    directory = StaticHotkeyDirectory.from_settings(EpistulaSettings(hotkeys=["5A", "5B:12.5"]))
    import asyncio

    assert asyncio.run(directory.lookup(1, "5B")) == HotkeyInfo(validator_permit=True, stake=12.5)
    assert asyncio.run(directory.lookup(1, "5C")) is None


# --- through the guard -----------------------------------------------------------------------------------


@post("/test/signed", opt={"scope": Scope.INFERENCE, "epistula": True}, sync_to_thread=False, status_code=200)
def signed_route(request: Request, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    principal = principal_of(request)
    assert principal is not None
    return {"kind": principal.kind, "id": principal.id, "echo": data}


@post("/test/keyonly", opt={"scope": Scope.INFERENCE}, sync_to_thread=False, status_code=200)
def key_only_route(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


@pytest.fixture
def epistula_settings(settings_factory: Any) -> Settings:
    from tests.conftest import migrate

    settings: Settings = settings_factory(
        PYLON_EPISTULA_HOTKEY=PYLON.ss58_address, PYLON_EPISTULA_HOTKEYS=VALIDATOR.ss58_address
    )
    migrate(settings)
    return settings


@pytest.fixture
async def signed_client(epistula_settings: Settings) -> Any:
    from app.main import create_app

    app = create_app(epistula_settings)
    app.litestar.register(signed_route)
    app.litestar.register(key_only_route)
    async with PylonTestClient(app=app) as client:
        yield client


async def test_route_accepts_a_signature_and_reads_the_same_body(signed_client: AsyncTestClient) -> None:
    body = json.dumps({"model": "m", "messages": []}).encode()
    headers = sign_request(VALIDATOR, body, PYLON.ss58_address)
    response = await signed_client.post(
        "/test/signed", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "kind": "epistula",
        "id": VALIDATOR.ss58_address,
        "echo": {"model": "m", "messages": []},
    }
    replay = await signed_client.post(
        "/test/signed", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
    tampered = sign_request(VALIDATOR, body, PYLON.ss58_address)
    response = await signed_client.post("/test/signed", content=body + b" ", headers=tampered)
    assert response.status_code == 401


async def test_route_accepts_a_key_too(signed_client: AsyncTestClient) -> None:
    key = (await create_key(signed_client, ["inference"]))["key"]
    response = await signed_client.post("/test/signed", json={"a": 1}, headers=bearer(key))
    assert response.status_code == 200 and response.json()["kind"] == "api_key"
    assert (await signed_client.post("/test/signed", json={"a": 1})).status_code == 401


async def test_unregistered_signer_gets_403_through_the_guard(signed_client: AsyncTestClient) -> None:
    headers = sign_request(STRANGER, b"{}", PYLON.ss58_address)
    response = await signed_client.post("/test/signed", content=b"{}", headers=headers)
    assert response.status_code == 403 and "not registered" in response.json()["detail"]


async def test_routes_without_epistula_ignore_signatures(signed_client: AsyncTestClient) -> None:
    headers = sign_request(VALIDATOR, b"{}", PYLON.ss58_address)
    response = await signed_client.post("/test/keyonly", content=b"{}", headers=headers)
    assert response.status_code == 401


async def test_signed_requests_are_recorded_under_the_hotkey(signed_client: AsyncTestClient) -> None:
    for _ in range(3):
        headers = sign_request(VALIDATOR, b"{}", PYLON.ss58_address)
        assert (await signed_client.post("/test/signed", content=b"{}", headers=headers)).status_code == 200
    usage = await signed_client.get(f"/api/v1/keys/{VALIDATOR.ss58_address}/usage", headers=ADMIN)
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"]["requests"] == 3


# --- Signed-For defaults to the default identity; signers come from the metagraph --------------------------


async def test_use_default_hotkey_only_when_none_is_configured(clock: Clock) -> None:
    unset = EpistulaVerifier(EpistulaSettings(), default_netuid=1, clock=clock)
    assert unset.use_default_hotkey(PYLON.ss58_address)
    assert await unset.verify(signed(b"{}", clock), b"{}", DIRECTORY) == VALIDATOR.ss58_address
    pinned = verifier(clock)
    assert not pinned.use_default_hotkey(STRANGER.ss58_address)
    assert pinned.own_hotkey == PYLON.ss58_address


@pytest.fixture
async def dev_wallet_client(settings_factory: Any) -> Any:
    """PYLON_NETWORK=local, no PYLON_EPISTULA_HOTKEY(S): the dev wallet signs, the metagraph vouches."""
    from app.main import create_app
    from tests.conftest import migrate

    settings: Settings = settings_factory(PYLON_LOCAL_BLOCK_TIME="3600")
    migrate(settings)
    app = create_app(settings)
    app.litestar.register(signed_route)
    async with PylonTestClient(app=app) as client:
        yield client


async def test_signed_for_defaults_to_the_dev_wallet_and_signers_come_from_the_metagraph(
    dev_wallet_client: AsyncTestClient,
) -> None:
    from app.chain.metagraph import MetagraphHotkeyDirectory
    from app.devchain.genesis import keypair_for

    state = dev_wallet_client.app.state
    own = state.weights.identities["default"].hotkey_ss58
    assert state.keys_runtime.epistula.own_hotkey == own
    assert isinstance(state.hotkey_directory, MetagraphHotkeyDirectory)
    settings: Settings = state.settings
    neuron = keypair_for(settings.devchain.seed, settings.chain.netuid, 5)
    headers = sign_request(neuron, b"{}", own)
    response = await dev_wallet_client.post("/test/signed", content=b"{}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == neuron.ss58_address
    other_target = await dev_wallet_client.post(
        "/test/signed", content=b"{}", headers=sign_request(neuron, b"{}", PYLON.ss58_address)
    )
    assert other_target.status_code == 401 and other_target.json()["extra"]["expected"] == own
    stranger = await dev_wallet_client.post(
        "/test/signed", content=b"{}", headers=sign_request(STRANGER, b"{}", own)
    )
    assert stranger.status_code == 403 and "not registered" in stranger.json()["detail"]
