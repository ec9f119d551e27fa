"""Fiber's signed requests and MLTS against a miner's Pylon in process, from a validator written to
Fiber's wire format (tests/fiber/validator.py, which imports nothing of Pylon)."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from app.inference.router import BackendRouter
from tests.fiber import validator as fiber
from tests.fiber.conftest import CHAT, MINER, STRANGER, VALIDATOR, Miner, running_miner

BASE = "http://miner"
# Every test shares the module's miner and its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def post_signed(miner: Miner, body: bytes, headers: dict[str, str], path: str = "/v1/chat/completions"):  # type: ignore[no-untyped-def]
    return await miner.http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})


async def test_fiber_signed_requests_and_their_refusals(miner: Miner) -> None:
    if True:
        body = json.dumps(CHAT).encode()
        headers = fiber.signed_headers(VALIDATOR, MINER.ss58_address, body)
        answer = await post_signed(miner, body, headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        # Security headers on a hot or routed answer alike.
        assert answer.headers["x-content-type-options"] == "nosniff"

        replayed = await post_signed(miner, body, headers)
        assert replayed.status_code == 401, replayed.text
        assert "nonce already used" in replayed.json()["error"]["message"]

        stale_nonce = fiber.generate_nonce(time.time_ns() - 121 * 10**9)
        stale = await post_signed(
            miner, body, fiber.signed_headers(VALIDATOR, MINER.ss58_address, body, stale_nonce)
        )
        assert stale.status_code == 401 and "stale" in stale.json()["error"]["message"], stale.text

        future_nonce = fiber.generate_nonce(time.time_ns() + 121 * 10**9)
        future = await post_signed(
            miner, body, fiber.signed_headers(VALIDATOR, MINER.ss58_address, body, future_nonce)
        )
        assert future.status_code == 401 and "in the future" in future.json()["error"]["message"]

        other_body = json.dumps({**CHAT, "max_tokens": 4}).encode()
        tampered = await post_signed(
            miner, other_body, fiber.signed_headers(VALIDATOR, MINER.ss58_address, body)
        )
        assert tampered.status_code == 401 and "does not match" in tampered.json()["error"]["message"]

        unregistered = await post_signed(
            miner, body, fiber.signed_headers(STRANGER, MINER.ss58_address, body)
        )
        assert unregistered.status_code == 403, unregistered.text
        assert "not registered" in unregistered.json()["error"]["message"]

        other_miner = await post_signed(
            miner, body, fiber.signed_headers(VALIDATOR, STRANGER.ss58_address, body)
        )
        assert other_miner.status_code == 401 and "another miner" in other_miner.json()["error"]["message"]

        malformed = await post_signed(miner, body, {**headers, "nonce": "yesterday"})
        assert malformed.status_code == 400 and "nonce" in malformed.json()["error"]["message"]

        # Fiber is a credential of routes that declare it: the keys admin API refuses it.
        keys = await miner.http.get(
            "/api/v1/keys", headers=fiber.signed_headers(VALIDATOR, MINER.ss58_address, b"")
        )
        assert keys.status_code == 401, keys.text


async def test_mlts_handshake_and_encrypted_chat(miner: Miner, miner_dir) -> None:  # type: ignore[no-untyped-def]
    tmp_path = miner_dir
    if True:
        key = await fiber.public_key(miner.http, BASE)
        assert key["hotkey"] == MINER.ss58_address
        assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
        assert abs(key["timestamp"] - time.time()) < 5
        pem_file = tmp_path / "fiber" / "rsa_private_key.pem"
        assert stat.S_IMODE(pem_file.stat().st_mode) == 0o600

        session = await fiber.handshake(miner.http, BASE, VALIDATOR)
        files = list((tmp_path / "fiber" / "symmetric").glob("*.json"))
        assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600

        answer = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["x-pylon-fiber-content-type"].startswith("application/json")
        chat = json.loads(fiber.opened(session, answer))
        assert chat["object"] == "chat.completion" and chat["usage"]["completion_tokens"] == 3

        streamed = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", {**CHAT, "stream": True}
        )
        assert streamed.status_code == 200 and streamed.headers["x-pylon-fiber-encoding"] == "fernet-lines"
        events = fiber.opened(session, streamed).decode()
        assert events.rstrip().endswith("data: [DONE]") and '"chat.completion.chunk"' in events

        # The route's own refusal comes back sealed, in its own format.
        bad = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", {"model": 1}
        )
        assert bad.status_code == 400
        assert "error" in json.loads(fiber.opened(session, bad))

        # A route Fiber does not open (keys admin) refuses the call as it refuses an anonymous caller.
        admin = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/api/v1/keys", {"name": "x"}
        )
        assert admin.status_code == 401

        headers = fiber.mlts_headers(VALIDATOR, MINER.ss58_address, session.key_uuid)
        first = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT, headers
        )
        assert first.status_code == 200
        reused = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT, headers
        )
        assert reused.status_code == 401 and "nonce already used" in reused.json()["detail"], reused.text

        stale_headers = fiber.mlts_headers(
            VALIDATOR,
            MINER.ss58_address,
            session.key_uuid,
            fiber.generate_nonce(time.time_ns() - 300 * 10**9),
        )
        stale = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT, stale_headers
        )
        assert stale.status_code == 401 and "stale" in stale.json()["detail"]

        token = bytearray(fiber.encrypt_payload(session, CHAT))
        token[40] = ord("A") if token[40] != ord("A") else ord("B")
        tampered = await miner.http.post(
            "/v1/chat/completions",
            content=bytes(token),
            headers=fiber.mlts_headers(VALIDATOR, MINER.ss58_address, session.key_uuid),
        )
        assert tampered.status_code == 400 and "not a Fernet token" in tampered.json()["detail"], (
            tampered.text
        )

        unknown = fiber.Session(session.fernet, os.urandom(32).hex(), MINER.ss58_address)
        refused = await fiber.encrypted_post(
            miner.http, BASE, VALIDATOR, unknown, "/v1/chat/completions", CHAT
        )
        assert refused.status_code == 400 and refused.json()["extra"]["requires_handshake"] is True

        # A stranger's key exchange is refused before anything is stored.
        answer, _ = await fiber.exchange(miner.http, BASE, STRANGER, MINER.ss58_address, key["public_key"])
        assert answer.status_code == 403 and "not registered" in answer.json()["detail"]
        assert len(list((tmp_path / "fiber" / "symmetric").glob("*.json"))) == 1
        # A stranger using a known uuid is refused too (keys are per validator hotkey).
        stranger = await fiber.encrypted_post(
            miner.http, BASE, STRANGER, session, "/v1/chat/completions", CHAT
        )
        assert stranger.status_code == 403


async def test_rotated_rsa_key_and_keys_shared_by_workers(miner: Miner, miner_dir, fake_model_server) -> None:  # type: ignore[no-untyped-def]
    from app.fiber.keys import rotate_rsa_key

    tmp_path = miner_dir
    if True:
        before = (await fiber.public_key(miner.http, BASE))["public_key"]
        session = await fiber.handshake(miner.http, BASE, VALIDATOR)
        # A second worker of the same instance: its own memory, the same data folder.
        async with running_miner(miner_dir, fake_model_server) as other_worker:
            answer = await fiber.encrypted_post(
                other_worker.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT
            )
            assert answer.status_code == 200, answer.text
        rotate_rsa_key(tmp_path)
        after = (await fiber.public_key(miner.http, BASE))["public_key"]
        assert after != before
        # An exchange encrypted to the old key cannot be read any more; the key already exchanged still works.
        stale, _ = await fiber.exchange(miner.http, BASE, VALIDATOR, MINER.ss58_address, before)
        assert stale.status_code == 400 and "rotated" in stale.json()["detail"]
        still = await fiber.encrypted_post(miner.http, BASE, VALIDATOR, session, "/v1/chat/completions", CHAT)
        assert still.status_code == 200


async def test_availability(miner: Miner) -> None:
    answer = await miner.http.get("/availability")
    assert answer.status_code == 200 and answer.json() == {"available": True}


async def test_availability_reasons(miner: Miner) -> None:
    assert (
        BackendRouter([], cooldown=1, health_interval=1).availability()
        == "no inference backend is configured"
    )
    router = miner.app.state.inference.router
    (state,) = router.states
    state.in_flight = 1
    try:
        # No cap: a busy backend still takes work.
        assert router.availability() is None
        state.healthy = False
        assert router.availability() == "every inference backend is down"
    finally:
        state.healthy, state.in_flight = True, 0


@pytest.mark.parametrize("missing", ["signature", "nonce", "miner-hotkey"])
async def test_fiber_headers_missing(miner: Miner, missing: str) -> None:
    body = json.dumps(CHAT).encode()
    headers = fiber.signed_headers(VALIDATOR, MINER.ss58_address, body)
    del headers[missing]
    answer = await post_signed(miner, body, headers)
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["error"]["message"]
