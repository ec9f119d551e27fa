"""Issue 7 against `pylon localnet`: `pylon serve` signs weights through the turbobt adapter and the node
stores them (set) or holds a timelocked commit (commit-reveal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import LiveServer

from .conftest import NodeThread, Wallets

HEADERS = {"Authorization": "Bearer test-admin-token"}


def serve_as_validator(localnet: NodeThread, wallets: Wallets, live_server_factory: Any) -> LiveServer:
    server: LiveServer = live_server_factory(
        PYLON_NETWORK=localnet.url,
        PYLON_ARCHIVE_NETWORK="",
        PYLON_NETUID="1",
        PYLON_CALL_TIMEOUT="20",
        PYLON_WALLET_NAME="validator",
        PYLON_WALLET_HOTKEY="default",
        PYLON_WALLET_PATH=str(wallets.path),
        PYLON_WEIGHTS_COALESCE_SECONDS="0",
        PYLON_WEIGHTS_POLL_INTERVAL="0.2",
    ).start(timeout=60)
    return server


def other_hotkeys(localnet: NodeThread, wallets: Wallets, count: int) -> list[str]:
    own = wallets.hotkey("validator")
    hotkeys = localnet.call(lambda node: [n.hotkey for n in node.chain.subnet(1).neurons])
    return [h for h in hotkeys if h != own][:count]


def wait_job(
    server: LiveServer, job_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}/api/v1/weights/jobs/{job_id}", headers=HEADERS, timeout=10)
        assert response.status_code == 200, response.text
        job = response.json()
        if done(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}\n{server.log()[-4000:]}")


def put_weights(server: LiveServer, weights: dict[str, float]) -> dict[str, Any]:
    response = httpx.put(
        f"{server.url}/api/v1/subnet/1/weights", json={"weights": weights}, headers=HEADERS, timeout=30
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    assert accepted["identity"] == "default" and accepted["skipped_hotkeys"] == []
    return accepted


def finished(job: dict[str, Any]) -> bool:
    return job["status"] not in ("pending", "running")


def test_put_weights_lands_in_the_nodes_weights_storage(
    localnet: NodeThread, wallets: Wallets, live_server_factory: Any
) -> None:
    server = serve_as_validator(localnet, wallets, live_server_factory)
    first, second = other_hotkeys(localnet, wallets, 2)
    accepted = put_weights(server, {first: 1.0, second: 0.5})
    job = wait_job(server, accepted["job_id"], finished)
    assert job["status"] == "set", job
    assert job["mode"] == "set" and job["hotkey"] == wallets.hotkey("validator")
    assert job["applied_block"] is not None
    # The adapter reports the hash of the extrinsic the node applied.
    assert job["extrinsic_hash"].startswith("0x") and len(job["extrinsic_hash"]) == 66

    def stored(node: Any) -> tuple[int | None, dict[int, int], dict[str, int]]:
        subnet = node.chain.subnet(1)
        uid = subnet.uid_of(wallets.hotkey("validator"))
        uids = {hotkey: subnet.uid_of(hotkey) for hotkey in (first, second)}
        return uid, dict(subnet.weights.get(uid, ())), uids

    uid, weights, uids = localnet.call(stored)
    assert uid is not None
    # Max-upscaled to u16, as subtensor stores them.
    assert weights == {uids[first]: 65535, uids[second]: 32768}

    last = httpx.get(f"{server.url}/api/v1/subnet/1/weights/last", headers=HEADERS, timeout=10)
    assert last.status_code == 200, last.text
    assert last.json()["job_id"] == job["id"] and last.json()["status"] == "set"


def test_put_weights_commits_on_a_commit_reveal_subnet(
    localnet: NodeThread, wallets: Wallets, live_server_factory: Any
) -> None:
    localnet.call(lambda node: node.chain.set_hyperparams(1, commit_reveal_weights_enabled=True))
    server = serve_as_validator(localnet, wallets, live_server_factory)
    (target,) = other_hotkeys(localnet, wallets, 1)
    accepted = put_weights(server, {target: 1.0})
    job = wait_job(server, accepted["job_id"], finished)
    assert job["status"] == "committed", job
    assert job["mode"] == "commit"
    assert job["reveal_round"] is not None

    def committed(node: Any) -> list[tuple[str, int]]:
        # The drand round the node's storage (CRV3WeightCommits) shows for each pending commit.
        return [
            (c.hotkey, node.commit_payload(1, c.hotkey, c.commit_block)[1])
            for c in node.chain.subnet(1).commits
        ]

    assert localnet.call(committed) == [(wallets.hotkey("validator"), job["reveal_round"])]
    last = httpx.get(f"{server.url}/api/v1/subnet/1/weights/last", headers=HEADERS, timeout=10).json()
    assert last["status"] == "committed" and last["reveal_round"] == job["reveal_round"]
