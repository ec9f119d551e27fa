"""`nox -s soak`: 64 connections on the hot routes for a few minutes against `pylon serve` (issue 19).

Two wrk runs at once, 32 connections each: Pylon's latest neurons and bittensor-pylon v1's latest
neurons on the development chain (256 neurons, a block every 2 s so the cache turns over). Prints
requests, errors (socket errors and non-2xx answers), p50/p99 and RSS per process at start and end.
`PYLON_SOAK_SECONDS` sets the length (default 180), `PYLON_SOAK_WORKERS` the workers (default 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import ensure_wrk, free_port, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
ROUTES = ("/api/v1/subnet/1/neurons/latest", "/api/v1/subnet/1/block/latest/neurons")


def rss(master: psutil.Process) -> dict[str, float]:
    found = {"master": master.memory_info().rss / MB}
    for index, child in enumerate(master.children(recursive=True)):
        found[f"worker {index + 1}"] = child.memory_info().rss / MB
    return found


def ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("soak: wrk is not available (apt-get install wrk)")
    seconds = int(os.environ.get("PYLON_SOAK_SECONDS", "180"))
    workers = os.environ.get("PYLON_SOAK_WORKERS", "2")
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": tempfile.mkdtemp(prefix="pylon-soak-"),
        "PYLON_LOCAL_BLOCK_TIME": "2",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", workers]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_up(f"{url}/health", server, status=200)
        master = psutil.Process(server.pid)
        before = rss(master)
        wrk_args = [wrk, "-t1", "-c32", "--latency", "-H", "Authorization: Bearer test-admin-token"]
        runs = [
            subprocess.Popen(
                [*wrk_args, f"-d{seconds}s", url + route],
                stdout=subprocess.PIPE,
                text=True,
            )
            for route in ROUTES
        ]
        outputs = [run.communicate()[0] for run in runs]
        after = rss(master)
    finally:
        stop(server)
    print(f"soak: {seconds}s, 64 connections (32 per route), {workers} workers")
    for route, out in zip(ROUTES, outputs, strict=True):
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        p50 = ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        p99 = ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        errors = int(non_2xx.group(1)) if non_2xx else 0
        print(
            f"{route:<44} {requests:>9} requests  {errors} non-2xx  "
            f"socket errors: {socket_errors.group(1) if socket_errors else 'none'}  "
            f"p50 {p50:.2f} ms  p99 {p99:.2f} ms"
        )
    print(f"{'process':<12}{'RSS start MB':>14}{'RSS end MB':>12}")
    for name, start in before.items():
        print(f"{name:<12}{start:>14.1f}{after.get(name, float('nan')):>12.1f}")


if __name__ == "__main__":
    main()
