"""Two granian workers share the job table: a burst lands once; a CLI-made job is applied; metrics add up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import PROJECT_ROOT, LiveServer
from tests.e2e.test_weights_restart import wait_job

# envs/test.env's bootstrap admin token.
ADMIN = {"Authorization": "Bearer test-admin-token"}

ENV = {
    "PYLON_WORKERS": "2",
    "PYLON_LOCAL_NEURONS": "16",
    "PYLON_LOCAL_NETUIDS": "1,2",
    "PYLON_WEIGHTS_COALESCE_SECONDS": "0.5",
    "PYLON_WEIGHTS_POLL_INTERVAL": "0.1",
}


def test_burst_across_two_workers_applies_one_job(live_server_factory: Callable[..., LiveServer]) -> None:
    server = live_server_factory(**ENV).start()
    neurons = httpx.get(f"{server.url}/api/v1/subnet/1/neurons/latest", headers=ADMIN, timeout=10).json()[
        "neurons"
    ]
    keys = list(neurons)[:8]

    def put(i: int) -> int:
        body = {"weights": {key: float((i + n) % 5 + 1) for n, key in enumerate(keys)}}
        response = httpx.put(f"{server.url}/api/v1/subnet/1/weights", json=body, headers=ADMIN, timeout=10)
        assert response.status_code == 202, response.text
        return int(response.json()["job_id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(put, range(100)))
    newest = max(ids)
    job = wait_job(server, newest, lambda j: j["status"] not in ("pending", "running"))
    assert job["status"] == "set", job
    listed = httpx.get(
        f"{server.url}/api/v1/weights/jobs", params={"netuid": 1, "limit": 500}, headers=ADMIN, timeout=10
    )
    statuses = Counter(j["status"] for j in listed.json()["jobs"])
    assert statuses == {"set": 1, "superseded": 99}, statuses

    # A job made by the CLI (no HTTP) is applied by the running server's worker.
    weights_file = server.log_path.parent / "weights.json"
    subnet2 = httpx.get(f"{server.url}/api/v1/subnet/2/neurons/latest", headers=ADMIN, timeout=10).json()[
        "neurons"
    ]
    weights_file.write_text(json.dumps({next(iter(subnet2)): 1.0, "5NotOnSubnet2": 1.0}))
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "weights",
            "set",
            "--netuid",
            "2",
            "--file",
            str(weights_file),
            "--json",
        ],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cli_job = json.loads(created.stdout)["job_id"]
    job = wait_job(server, cli_job, lambda j: j["status"] not in ("pending", "running"))
    assert job["status"] == "set", job
    # The CLI had no chain view: the worker lists the unknown hotkey when it applies the job.
    assert job["skipped_hotkeys"] == ["5NotOnSubnet2"]
    assert job["epoch_end_block"] is not None, "the worker fixed the window of a job made without the chain"

    metrics = httpx.get(
        f"{server.url}/metrics", headers={"authorization": "Bearer test-metrics-token"}, timeout=10
    ).text
    set_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("pylon_apply_weights_job_duration_seconds_count")
        and 'status="set"' in line
        and 'netuid="1"' in line
    )
    assert float(set_line.rsplit(" ", 1)[1]) == 1.0
    assert "pylon_apply_weights_pending_jobs" in metrics
