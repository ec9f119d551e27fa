"""The upstream proxy in process: who gets through, which headers cross, failures, /status, metrics.

One app per module (the simulated chain's metagraph vouches for signers: its neurons' keypairs come from
`keypair_for`), in front of the fake internal server on loopback. Streaming and large bodies are tested
against a real `pylon serve` in test_streaming.py (the test client buffers whole answers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from bittensor_wallet import Keypair

from app.auth.epistula import sign_request
from app.devchain.genesis import keypair_for
from app.main import create_app
from app.settings import load_settings
from tests.client import PylonTestClient
from tests.conftest import base_env, migrate
from tests.keys.helpers import ADMIN, bearer, make_wallet
from tests.upstreams.conftest import RunningUpstream, dead_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIGNED_BODY_MAX = 4096


def upstreams_env(upstream: RunningUpstream) -> str:
    return json.dumps(
        [
            {"prefix": "/train", "url": upstream.url},
            {"prefix": "/inference", "url": f"{upstream.url}/echo", "name": "infer"},
            {"prefix": "/validators", "url": upstream.url, "require_validator_permit": True},
            {"prefix": "/staked", "url": upstream.url, "min_stake": 1e15},
            {"prefix": "/slow", "url": upstream.url, "timeout": 0.3},
            {"prefix": "/down", "url": f"http://127.0.0.1:{dead_port()}", "required": False},
        ]
    )


class Pylon:
    def __init__(self, client: PylonTestClient, own_hotkey: str, validator: Keypair, miner: Keypair) -> None:
        self.client = client
        self.own_hotkey = own_hotkey
        # Registered neurons of the simulated subnet, with and without a validator permit.
        self.validator = validator
        self.miner = miner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pylon(upstream: RunningUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pylon]:
    data = tmp_path_factory.mktemp("pylon")
    settings = load_settings(
        {
            **base_env(data),
            # One block for the whole module: the metagraph the signers are checked against stays put.
            "PYLON_LOCAL_BLOCK_TIME": "3600",
            "PYLON_UPSTREAMS": upstreams_env(upstream),
            "PYLON_UPSTREAM_SIGNED_BODY_MAX": str(SIGNED_BODY_MAX),
            "PYLON_UPSTREAM_STATUS_TTL": "30",
        }
    )
    migrate(settings)
    async with PylonTestClient(app=create_app(settings)) as client:
        state = client.app.state
        latest = await client.get("/api/v1/subnet/1/neurons/latest", headers=ADMIN)
        permits = {hotkey: n["validator_permit"] for hotkey, n in latest.json()["neurons"].items()}
        keypairs = [keypair_for(settings.devchain.seed, 1, uid) for uid in range(settings.devchain.neurons)]
        validator = next(k for k in keypairs if permits.get(k.ss58_address))
        miner = next(k for k in keypairs if permits.get(k.ss58_address) is False)
        yield Pylon(client, state.weights.identities["default"].hotkey_ss58, validator, miner)


async def signed_post(pylon: Pylon, path: str, body: bytes, keypair: Keypair | None = None, **kw: Any) -> Any:
    signed_for = kw.pop("signed_for", pylon.own_hotkey)
    headers = sign_request(keypair or pylon.validator, body, signed_for)
    return await pylon.client.post(path, content=kw.pop("send", body), headers={**headers, **kw})


def header(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


async def make_key(pylon: Pylon, scopes: list[str]) -> dict[str, Any]:
    created = await pylon.client.post("/api/v1/keys", json={"name": "t", "scopes": scopes}, headers=ADMIN)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


# --- who gets through -----------------------------------------------------------------------------------


async def test_no_credentials_get_401(pylon: Pylon) -> None:
    response = await pylon.client.post("/train/echo", content=b"x")
    assert response.status_code == 401
    assert "Epistula" in response.json()["detail"]


async def test_an_api_key_needs_the_upstream_scope(pylon: Pylon) -> None:
    without = await make_key(pylon, ["inference"])
    refused = await pylon.client.get("/train/echo", headers=bearer(without["key"]))
    assert refused.status_code == 403
    assert refused.json()["extra"]["missing_scope"] == "upstream"

    key = await make_key(pylon, ["upstream"])
    admitted = await pylon.client.get("/train/echo", headers=bearer(key["key"]))
    assert admitted.status_code == 200, admitted.text
    echo = admitted.json()
    assert header(echo, "X-Pylon-Caller") == ["api_key"]
    assert header(echo, "X-Pylon-Key-Id") == [key["id"]]
    assert header(echo, "Authorization") == [] and header(echo, "X-Pylon-Hotkey") == []


async def test_a_registered_signer_gets_through_and_the_upstream_learns_its_hotkey(pylon: Pylon) -> None:
    body = b'{"task": "train", "steps": 3}'
    response = await signed_post(pylon, "/train/echo/job", body, **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["path"] == "/echo/job" and echo["method"] == "POST"
    assert echo["sha256"] == hashlib.sha256(body).hexdigest()
    assert header(echo, "X-Pylon-Hotkey") == [pylon.validator.ss58_address]
    assert header(echo, "X-Pylon-Caller") == ["epistula"]
    assert header(echo, "Content-Type") == ["application/json"]
    # The signature is not the upstream's to replay.
    assert not [k for k, _ in echo["headers"] if k.lower().startswith("epistula-")]


async def test_a_changed_body_breaks_the_signature(pylon: Pylon) -> None:
    response = await signed_post(pylon, "/train/echo", b'{"a": 1}', send=b'{"a": 2}')
    assert response.status_code == 401
    assert "does not match" in response.json()["detail"]


async def test_a_request_signed_for_another_hotkey_is_refused(pylon: Pylon) -> None:
    response = await signed_post(pylon, "/train/echo", b"{}", signed_for=pylon.miner.ss58_address)
    assert response.status_code == 401
    assert response.json()["extra"]["expected"] == pylon.own_hotkey


async def test_an_unregistered_hotkey_is_refused(pylon: Pylon, tmp_path: Path) -> None:
    stranger = make_wallet(tmp_path, "stranger").hotkey
    response = await signed_post(pylon, "/train/echo", b"{}", keypair=stranger)
    assert response.status_code == 403
    assert "not registered" in response.json()["detail"]


async def test_an_upstream_may_require_a_validator_permit(pylon: Pylon) -> None:
    # The miner is registered: the /train upstream, with no permit required, lets it through.
    assert (await signed_post(pylon, "/train/echo", b"{}", keypair=pylon.miner)).status_code == 200
    refused = await signed_post(pylon, "/validators/echo", b"{}", keypair=pylon.miner)
    assert refused.status_code == 403
    assert "no validator permit" in refused.json()["detail"]
    assert (await signed_post(pylon, "/validators/echo", b"{}")).status_code == 200


async def test_an_upstream_may_require_a_minimum_stake(pylon: Pylon) -> None:
    refused = await signed_post(pylon, "/staked/echo", b"{}")
    assert refused.status_code == 403
    assert "below this route's minimum" in refused.json()["detail"]


async def test_a_signed_body_above_the_limit_gets_413(pylon: Pylon) -> None:
    response = await signed_post(pylon, "/train/echo", b"x" * (SIGNED_BODY_MAX + 1))
    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    # An API key's body of the same size is streamed, not bounded.
    key = await make_key(pylon, ["upstream"])
    streamed = await pylon.client.post(
        "/train/echo", content=b"x" * (SIGNED_BODY_MAX + 1), headers=bearer(key["key"])
    )
    assert streamed.status_code == 200 and streamed.json()["size"] == SIGNED_BODY_MAX + 1


# --- what crosses ---------------------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_dropped_and_the_others_passed(pylon: Pylon) -> None:
    response = await pylon.client.put(
        "/train/echo/a%20b?x=1&y=%2F",
        content=b"payload",
        headers={
            **ADMIN,
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic eA==",
            "X-Pylon-Hotkey": "spoofed",
            "X-Forwarded-For": "10.1.2.3",
            "X-Custom": "kept",
            "Accept": "text/plain",
        },
    )
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["method"] == "PUT"
    assert echo["path"] == "/echo/a%20b" and echo["query"] == "x=1&y=%2F"
    names = {key.lower() for key, _ in echo["headers"]}
    for dropped in ("x-private", "keep-alive", "te", "upgrade", "proxy-authorization", "authorization"):
        assert dropped not in names, dropped
    assert header(echo, "X-Custom") == ["kept"] and header(echo, "Accept") == ["text/plain"]
    assert header(echo, "X-Pylon-Hotkey") == []  # the caller cannot say who it is
    assert header(echo, "X-Pylon-Caller") == ["admin_token"]
    forwarded = header(echo, "X-Forwarded-For")
    assert len(forwarded) == 1 and forwarded[0].startswith("10.1.2.3, ")
    assert header(echo, "X-Forwarded-Proto") == ["http"]
    assert header(echo, "X-Request-ID") == [response.headers["x-request-id"]]


async def test_hop_by_hop_headers_of_the_answer_are_dropped(pylon: Pylon) -> None:
    response = await pylon.client.get("/train/hop", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["x-kept"] == "yes"
    assert "x-hop" not in response.headers and "keep-alive" not in response.headers


async def test_the_prefix_is_replaced_by_the_url_path(pylon: Pylon) -> None:
    response = await pylon.client.delete("/inference/models/7", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["path"] == "/echo/models/7" and response.json()["method"] == "DELETE"
    bare = await pylon.client.patch("/inference", headers=ADMIN, content=b"{}")
    assert bare.json()["path"] == "/echo"


async def test_a_path_that_only_starts_like_a_prefix_is_not_proxied(pylon: Pylon) -> None:
    response = await pylon.client.get("/trainer", headers=ADMIN)
    assert response.status_code == 404 and response.json()["detail"] == "Not Found"


# --- failures, /status, metrics -------------------------------------------------------------------------


async def test_an_upstream_down_gets_502_json(pylon: Pylon) -> None:
    response = await pylon.client.get("/down/anything", headers=ADMIN)
    assert response.status_code == 502
    body = response.json()
    assert body["extra"] == {"upstream": "down", "reason": "unreachable"}
    assert "unreachable" in body["detail"]


async def test_a_slow_upstream_gets_504_json(pylon: Pylon) -> None:
    response = await pylon.client.get("/slow/slow?delay=3", headers=ADMIN)
    assert response.status_code == 504
    assert response.json()["extra"] == {"upstream": "slow", "reason": "timeout"}
    assert "0.3s" in response.json()["detail"]


async def test_status_reports_every_component(pylon: Pylon, upstream: RunningUpstream) -> None:
    response = await pylon.client.get("/status")
    checks = response.json()["checks"]
    assert {"database", "chain", "upstream:train", "upstream:infer", "upstream:down"} <= set(checks)
    assert checks["upstream:train"]["status"] == "ok"
    # Not required: down makes it degraded, and /status still answers 200.
    assert checks["upstream:down"]["status"] == "degraded"
    assert response.status_code == 200 and response.json()["status"] == "degraded"

    # A required upstream answering 5xx is down: 503 once the cached probe has expired.
    upstream.fake.health_status = 503
    proxy = pylon.client.app.state.upstreams
    proxy._probes.clear()
    try:
        down = await pylon.client.get("/status")
        assert down.status_code == 503 and down.json()["checks"]["upstream:train"]["status"] == "down"
        assert down.json()["checks"]["upstream:train"]["data"]["status_code"] == 503
        # Cached for PYLON_UPSTREAM_STATUS_TTL: the healed upstream is not probed again yet.
        upstream.fake.health_status = 200
        assert (await pylon.client.get("/status")).status_code == 503
    finally:
        upstream.fake.health_status = 200
        proxy._probes.clear()
    assert (await pylon.client.get("/status")).status_code == 200
    # /ready is unchanged by upstreams.
    assert not [name for name in (await pylon.client.get("/ready")).json()["checks"] if "upstream" in name]


async def test_metrics_are_labelled_by_upstream_name_only(pylon: Pylon) -> None:
    await pylon.client.get("/inference/some/raw/path/9f3a", headers=ADMIN)
    text = (await pylon.client.get("/metrics", headers=ADMIN)).text
    lines = [line for line in text.splitlines() if line.startswith("pylon_upstream_")]
    assert any(
        line.startswith('pylon_upstream_requests_total{status_class="2xx",upstream="infer"}')
        for line in lines
    )
    assert any('pylon_upstream_failures_total{kind="unreachable",upstream="down"}' in line for line in lines)
    assert any(line.startswith('pylon_upstream_response_seconds_count{upstream="infer"}') for line in lines)
    assert not [line for line in lines if "9f3a" in line or pylon_hotkey_in(line, pylon)]
    http = [line for line in text.splitlines() if line.startswith("pylon_requests_total") and "9f3a" in line]
    assert http == []


def pylon_hotkey_in(line: str, pylon: Pylon) -> bool:
    return pylon.validator.ss58_address in line or pylon.miner.ss58_address in line


async def test_other_front_ends_proxy_by_path_without_asgi(pylon: Pylon) -> None:
    """`UpstreamProxy.proxy`: plain values in and out (what the Fiber protocol's requests go through)."""
    from app.auth.context import Principal
    from app.upstreams.service import ProxyRequest, UpstreamProxy

    # Its own proxy: the test client serves the app from another thread's event loop.
    proxy = UpstreamProxy(pylon.client.app.state.settings.upstreams)
    await proxy.start()
    caller = Principal(kind="epistula", id=pylon.validator.ss58_address, scopes=frozenset({"upstream"}))

    async def pieces() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    request = ProxyRequest(
        method="POST",
        raw_path="/inference/run",
        query="n=1",
        headers=[(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")],
        caller=caller,
        request_id="fiber-1",
    )
    try:
        response = await proxy.proxy(request, pieces())
        assert response is not None and response.status == 200
        try:
            echo = json.loads(b"".join([piece async for piece in response]))
        finally:
            await response.aclose()
        assert await proxy.proxy(ProxyRequest(method="GET", raw_path="/nowhere"), None) is None
    finally:
        await proxy.close()
    assert echo["path"] == "/echo/run" and echo["query"] == "n=1" and echo["size"] == 4
    assert header(echo, "X-Pylon-Hotkey") == [pylon.validator.ss58_address]
    assert header(echo, "X-Request-ID") == ["fiber-1"]
