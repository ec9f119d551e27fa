"""Memory per worker: `pylon serve` with 4 subnets of 256 neurons cached (budget: <= 150 MB RSS per worker).

Starts the real server on the development chain (PYLON_LOCAL_NETUIDS=1,2,3,4, 256 neurons each, 2 workers),
reads every subnet's latest neurons through each worker until all four are cached, and prints each
process's RSS, its USS (memory only that process holds) and PSS (shared pages split between the processes
that share them) at start and after the reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import free_port, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
NETUIDS = (1, 2, 3, 4)
WORKERS = 2
MB = 1024 * 1024


def figures(master: psutil.Process) -> list[tuple[str, float, float, float]]:
    rows = []
    for process in [master, *master.children(recursive=True)]:
        info = process.memory_full_info()
        role = "master" if process.pid == master.pid else f"worker {process.pid}"
        rows.append((role, info.rss / MB, info.uss / MB, info.pss / MB))
    return rows


def main() -> None:
    data = tempfile.mkdtemp(prefix="pylon-bench-memory-")
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": data,
        "PYLON_LOCAL_NETUIDS": ",".join(map(str, NETUIDS)),
        "PYLON_LOCAL_NEURONS": "256",
        "PYLON_LOCAL_BLOCK_TIME": "12",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", str(WORKERS)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_up(f"{url}/health", process, status=200)
        master = psutil.Process(process.pid)
        start = figures(master)
        headers = {"Authorization": "Bearer test-admin-token"}
        # New connections land on either worker: enough of them reach both.
        for _ in range(10 * WORKERS):
            for netuid in NETUIDS:
                answer = httpx.get(
                    f"{url}/api/v1/subnet/{netuid}/neurons/latest", headers=headers, timeout=30
                )
                assert answer.status_code == 200, answer.text
        end = figures(master)
    finally:
        stop(process)
    print(f"memory: pylon serve, {WORKERS} workers, {len(NETUIDS)} subnets x 256 neurons cached (MB)")
    print(f"{'process':<16}{'RSS start':>10}{'RSS end':>10}{'USS end':>10}{'PSS end':>10}")
    for (role, rss0, _, _), (_, rss1, uss1, pss1) in zip(start, end, strict=True):
        print(f"{role:<16}{rss0:>10.1f}{rss1:>10.1f}{uss1:>10.1f}{pss1:>10.1f}")
    worst = max(rss for role, rss, _, _ in end if role != "master")
    print(f"largest worker RSS: {worst:.1f} MB (budget 150 MB)")


if __name__ == "__main__":
    main()
