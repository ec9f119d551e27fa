"""`pylon serve` on the development chain runs it once, as a node: both workers and the CLI see one chain.

One server (2 workers, a node on a free port) serves every test of the module; the CLI runs as subprocesses
with the server's environment, as an operator's second terminal would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PROJECT_ROOT, LiveServer, base_env, free_port

ADMIN = {"Authorization": "Bearer test-admin-token"}


def make_server(folder: Path, **env: str) -> LiveServer:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    full_env = {
        **inherited,
        **base_env(folder / "data"),
        "PYLON_LOCAL_NODE": "true",
        "PYLON_LOCAL_NODE_PORT": str(free_port()),
        "PYLON_LOCAL_NEURONS": "16",
        "PYLON_LOCAL_BLOCK_TIME": "0.5",
        "PYLON_WEIGHTS_COALESCE_SECONDS": "0",
        "PYLON_WEIGHTS_POLL_INTERVAL": "0.1",
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return LiveServer(full_env, free_port(), folder / "serve.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_server(tmp_path_factory.mktemp("devnode"), PYLON_WORKERS="2").start(timeout=120)
    try:
        yield live
    finally:
        live.stop()


def pylon(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dev_hotkey(server: LiveServer) -> str:
    from bittensor_wallet import Wallet

    path = Path(server.env["PYLON_DATA_DIR"]) / "wallets"
    return str(Wallet(name="pylon-dev", hotkey="default", path=str(path)).hotkey.ss58_address)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not seen within {timeout}s: {what}")


def server_block(server: LiveServer) -> int:
    response = httpx.get(f"{server.url}/api/v1/subnet/1/neurons/latest", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.headers["X-Pylon-Block"])


def neuron(server: LiveServer, hotkey: str) -> dict[str, Any] | None:
    response = httpx.get(f"{server.url}/api/v1/subnet/1/neurons/latest/{hotkey}", headers=ADMIN, timeout=10)
    return response.json()["neuron"] if response.status_code == 200 else None


def test_weights_set_through_one_worker_show_in_every_workers_metagraph(server: LiveServer) -> None:
    hotkey = dev_hotkey(server)
    me = wait_for(lambda: neuron(server, hotkey), "the dev wallet registered by pylon serve")
    assert me["validator_permit"] is True
    others = [key for key in wait_for(lambda: neurons(server), "the metagraph") if key != hotkey][:4]
    put = httpx.put(
        f"{server.url}/api/v1/subnet/1/weights",
        json={"weights": {key: 1.0 for key in others}},
        headers=ADMIN,
        timeout=10,
    )
    assert put.status_code == 202, put.text
    job_id = put.json()["job_id"]

    def finished() -> dict[str, Any] | None:
        job = httpx.get(f"{server.url}/api/v1/weights/jobs/{job_id}", headers=ADMIN, timeout=10).json()
        return job if job["status"] not in ("pending", "running") else None

    job = wait_for(finished, f"job {job_id} applied")
    assert job["status"] == "set", job
    applied = job["applied_block"]

    def last_update(_: int) -> int:
        # A new connection per request, so both workers' accept loops get some.
        with httpx.Client(timeout=10) as client:
            response = client.get(f"{server.url}/api/v1/subnet/1/neurons/latest/{hotkey}", headers=ADMIN)
        return int(response.json()["neuron"]["last_update"])

    # Each worker counts its requests in its own metrics files: read until both have answered.
    assert server.process is not None
    metrics = Path(server.env["PYLON_DATA_DIR"]) / "metrics" / str(server.process.pid)
    answers: list[int] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        # A worker may still serve the block before the one that included the weights: give it a block.
        wait_for(lambda: min(pool.map(last_update, range(16))) >= applied, "both workers past the weights")
        for _ in range(20):
            answers += pool.map(last_update, range(16))
            pids = {path.stem.rsplit("_", 1)[-1] for path in metrics.glob("counter_*.db")}
            if len(pids) >= 2:
                break
    assert len(pids) == 2, f"only the workers {pids} answered"
    # Every answer, from either worker, shows the weights one worker set: the workers read one chain.
    assert min(answers) >= applied, (answers, applied)


def neurons(server: LiveServer) -> dict[str, Any] | None:
    response = httpx.get(f"{server.url}/api/v1/subnet/1/neurons/latest", headers=ADMIN, timeout=10)
    return response.json()["neurons"] if response.status_code == 200 else None


def test_chain_head_of_the_cli_is_the_servers_block(server: LiveServer) -> None:
    before = server_block(server)
    result = pylon(server, "chain", "head", "--json")
    after = server_block(server)
    assert result.returncode == 0, result.stderr
    assert "using the development chain served at ws://127.0.0.1:" in result.stderr
    head = json.loads(result.stdout)["number"]
    # One chain: the CLI's head lies between two reads of the server (a private copy would be at 1000).
    assert before - 2 <= head <= after + 2, (before, head, after)


def test_post_ip_with_the_dev_wallet_lands_in_the_servers_metagraph(server: LiveServer) -> None:
    hotkey = dev_hotkey(server)
    # The done-when, word for word: no wallet options, the dev wallet of the server signs.
    result = pylon(server, "post-ip", "--ip", "127.0.0.1", "--port", "8091", "--allow-private", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "127.0.0.1:8091" in result.stdout

    def axon() -> dict[str, Any] | None:
        found = neuron(server, hotkey)
        return found["axon_info"] if found and found["axon_info"]["port"] == 8091 else None

    assert wait_for(axon, "the posted axon") == {"ip": "127.0.0.1", "port": 8091, "protocol": 4}


def test_localnet_register_then_the_new_wallet_is_a_neuron(server: LiveServer, tmp_path: Path) -> None:
    created = pylon(server, "wallet", "create", "--name", "miner", "--path", str(tmp_path), "--json")
    assert created.returncode == 0, created.stderr
    hotkey = json.loads(created.stdout)["hotkey_ss58"]
    assert neuron(server, hotkey) is None
    registered = pylon(server, "localnet", "register", hotkey, "--netuid", "1", "--json")
    assert registered.returncode == 0, registered.stderr
    uid = json.loads(registered.stdout)["uids"]["1"]
    found = wait_for(lambda: neuron(server, hotkey), "the registered hotkey")
    assert found["uid"] == uid and found["validator_permit"] is False

    # A validator gets a permit: it could set weights from its own Pylon.
    assert pylon(server, "localnet", "register", hotkey, "--validator").returncode == 0
    wait_for(lambda: (neuron(server, hotkey) or {}).get("validator_permit"), "the validator permit")


def test_a_taken_node_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        live = make_server(tmp_path, PYLON_LOCAL_NODE_PORT=str(port))
        with pytest.raises(RuntimeError, match="exited with 1"):
            live.start(timeout=120)
    assert f"127.0.0.1:{port} is taken" in live.log() and "PYLON_LOCAL_NODE_PORT" in live.log()
