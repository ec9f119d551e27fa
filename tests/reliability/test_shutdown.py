"""SIGTERM to the whole process group of `pylon serve` ends every process and flushes usage (issue 19).

As systemd, Docker and a terminal's Ctrl-C deliver it: to the master and its workers at once. Several
rounds, because the fault seen before (the granian master alive, no longer listening) came 1 time in 5.
Usage is flushed only at shutdown here (the periodic flush is an hour away), so a missing row means the
workers' lifespan exit did not run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app
from tests.conftest import PROJECT_ROOT, base_env, free_port

ADMIN = {"Authorization": "Bearer test-admin-token"}
ROUNDS = 3
# A hang detector, not a benchmark: granian's own worker shutdown is bounded well below this.
BOUND = 30.0


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a service manager runs it
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"pylon serve did not start:\n{log.read_text()}")


def test_sigterm_to_the_group_ends_every_process_and_flushes_usage(tmp_path: Path) -> None:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    inherited.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env = {**inherited, **base_env(tmp_path / "data"), "PYLON_KEYS_USAGE_FLUSH_INTERVAL": "3600"}
    log = tmp_path / "serve.log"
    key_id = None
    sent = 0
    for round_ in range(ROUNDS):
        port = free_port()
        process = start(env, port, log)
        group = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
        assert len(group) >= 3, group  # the CLI/master and two workers
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            if key_id is None:
                created = client.post(
                    "/api/v1/keys", json={"name": "s", "scopes": ["neurons:read"]}, headers=ADMIN
                )
                key_id, secret = created.json()["id"], created.json()["key"]
            for _ in range(10):
                answer = client.get("/api/v1/neurons/latest", headers={"Authorization": f"Bearer {secret}"})
                assert answer.status_code == 200, answer.text
                sent += 1
        began = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(
                f"round {round_}: pylon serve still running {BOUND}s after SIGTERM:\n{log.read_text()}"
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(psutil.pid_exists(pid) and _alive(pid) for pid in group):
            time.sleep(0.05)
        left = [pid for pid in group if psutil.pid_exists(pid) and _alive(pid)]
        assert not left, f"round {round_}: processes left after SIGTERM: {left}"
        assert process.returncode == 0, (process.returncode, log.read_text()[-4000:])
        print(f"round {round_}: every process gone {time.monotonic() - began:.2f}s after SIGTERM")
    # Every request of every round was written by the shutdown flush.
    result = CliRunner().invoke(cli_app, ["keys", "usage", str(key_id), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["requests"] == sent, result.stdout


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
