# ruff: noqa: F811 (pytest fixtures imported from tests/inference and used as arguments)
"""Issue 6 end to end: a real `pylon serve` on the simulated chain in front of a fake OpenAI backend.

A validator of the subnet calls /v1/chat/completions with an Epistula signature and no API key; a client
with a key minted by `pylon keys create` on the server's own database uses the official SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import openai
import pytest

from app.auth.epistula import sign_request
from app.devchain.genesis import keypair_for
from app.settings import load_settings
from app.weights.identities import load_identities
from tests.conftest import PROJECT_ROOT, LiveServer
from tests.inference.conftest import (  # fixtures shared with tests/inference
    backends_env,
    fake_backend,  # noqa: F401
    fake_backend_factory,  # noqa: F401
    openai_backend,
)

ADMIN = {"Authorization": "Bearer test-admin-token"}
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


@pytest.fixture
def server(fake_backend, live_server_factory) -> LiveServer:
    # No PYLON_EPISTULA_HOTKEY(S): requests are signed for the dev wallet, signers checked on the metagraph.
    started: LiveServer = live_server_factory(**backends_env(openai_backend("fake", fake_backend))).start()
    return started


def a_validator(server: LiveServer) -> Any:
    """The keypair of a simulated neuron with a validator permit, as the served metagraph says."""
    settings = load_settings(server.env)
    latest = httpx.get(f"{server.url}/api/v1/subnet/1/neurons/latest", headers=ADMIN, timeout=10)
    assert latest.status_code == 200, latest.text
    permitted = {hotkey for hotkey, n in latest.json()["neurons"].items() if n["validator_permit"]}
    for uid in range(settings.devchain.neurons):
        keypair = keypair_for(settings.devchain.seed, 1, uid)
        if keypair.ss58_address in permitted:
            return keypair
    raise AssertionError("no simulated neuron has a validator permit")


def post_signed(
    server: LiveServer, keypair: Any, signed_for: str, body: bytes, **kwargs: Any
) -> httpx.Response:
    headers = {**sign_request(keypair, body, signed_for, **kwargs), "Content-Type": "application/json"}
    return httpx.post(f"{server.url}/v1/chat/completions", content=body, headers=headers, timeout=30)


def test_a_validator_signing_with_epistula_needs_no_api_key(server: LiveServer) -> None:
    own = load_identities(load_settings(server.env))["default"].hotkey_ss58
    validator = a_validator(server)
    body = json.dumps(CHAT).encode()

    signed = post_signed(server, validator, own, body, request_uuid="5b1e1c3c-7f0c-4b8e-9f43-1f6f2b0c9a11")
    assert signed.status_code == 200, signed.text
    assert signed.json()["choices"][0]["message"]["content"]

    replay_headers = {
        **sign_request(validator, body, own, request_uuid="5b1e1c3c-7f0c-4b8e-9f43-1f6f2b0c9a11"),
        "Content-Type": "application/json",
    }
    # Same uuid as the accepted request (a fresh timestamp and signature do not make it new).
    replay = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers=replay_headers, timeout=30)
    assert replay.status_code == 401, replay.text
    assert "replayed" in replay.json()["error"]["message"]

    stranger = keypair_for(12345, 1, 0)
    refused = post_signed(server, stranger, own, body)
    assert refused.status_code == 403, refused.text
    assert "not registered" in refused.json()["error"]["message"]

    wrong_target = post_signed(server, validator, stranger.ss58_address, body)
    assert wrong_target.status_code == 401, wrong_target.text

    anonymous = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert anonymous.status_code == 401, anonymous.text


def mint_key(server: LiveServer, *scopes: str) -> dict[str, Any]:
    """`pylon keys create ... --json` on the server's own database (same PYLON_DATA_DIR and env file)."""
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", "create", "--name", "sdk-client", *args, "--json"],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


async def test_sdk_with_a_key_minted_by_the_cli(server: LiveServer) -> None:
    created = mint_key(server, "inference")
    assert created["key"].startswith("pylon_")
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=created["key"], max_retries=0)
    chat = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert chat.usage is not None and chat.usage.completion_tokens == 4
    assert [m.id for m in (await client.models.list()).data] == ["fake-model"]

    # The key opens inference only.
    neurons = httpx.get(
        f"{server.url}/api/v1/subnet/1/neurons/latest",
        headers={"Authorization": f"Bearer {created['key']}"},
        timeout=10,
    )
    assert neurons.status_code == 403
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key="pylon_not-a-real-key", max_retries=0
        ).models.list()
