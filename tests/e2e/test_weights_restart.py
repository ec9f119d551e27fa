"""Durability: `kill -9` of `pylon serve` while a job waits to retry loses nothing; a restart lands it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer

# envs/test.env's bootstrap admin token.
ADMIN = {"Authorization": "Bearer test-admin-token"}

FAST_RETRIES = {
    "PYLON_WEIGHTS_COALESCE_SECONDS": "0",
    "PYLON_WEIGHTS_POLL_INTERVAL": "0.1",
    "PYLON_WEIGHTS_RETRY_START": "0.2",
    "PYLON_WEIGHTS_RETRY_CAP": "0.5",
    "PYLON_LOCAL_NEURONS": "16",
}


def descendants(pid: int) -> list[int]:
    """Child processes (granian's workers) of `pid`, read from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def kill_9(server: LiveServer) -> None:
    """SIGKILL the server and its workers at once: nothing gets to clean up."""
    assert server.process is not None
    pids = [server.process.pid, *descendants(server.process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_job(
    server: LiveServer, job_id: int, until: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/api/v1/weights/jobs/{job_id}", headers=ADMIN, timeout=5).json()
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(
        f"job {job_id} not in the expected state after {timeout}s: {job}\n{server.log()[-3000:]}"
    )


def test_sigkill_then_restart_sets_weights(live_server_factory: Callable[..., LiveServer]) -> None:
    failing = live_server_factory(PYLON_LOCAL_UNREACHABLE="true", **FAST_RETRIES).start()
    # The simulated subnet is deterministic (seed 0): ask the restarted server later which hotkeys exist;
    # here any hotkey of the seed works, so read them from a chain built the same way.
    from app.devchain.client import SimulatedChainClient
    from app.settings import load_settings

    chain = SimulatedChainClient.from_settings(load_settings(failing.env))
    target = chain.chain.subnet(1).neurons[3].hotkey
    response = httpx.put(
        f"{failing.url}/api/v1/subnet/weights", json={"weights": {target: 1.0}}, headers=ADMIN, timeout=10
    )
    assert response.status_code == 202
    assert response.json()["detail"] == "weights update scheduled" and response.json()["count"] == 1
    job_id = response.json()["job_id"]
    wait_job(failing, job_id, lambda j: j["attempts"] >= 1 and j["status"] == "pending")
    kill_9(failing)

    restarted = live_server_factory(**FAST_RETRIES).start()
    job = wait_job(restarted, job_id, lambda j: j["status"] not in ("pending", "running"))
    assert job["status"] == "set", job
    last = httpx.get(f"{restarted.url}/api/v1/subnet/1/weights/last", headers=ADMIN, timeout=5).json()
    assert last["job_id"] == job_id and last["block"] == job["applied_block"]
