"""Weights benchmark: PUT weights (256 hotkeys) requests/s at concurrency 16, and a burst of 1,000 PUTs.

Runs a real `pylon serve` (simulated subnet, SQLite in a temporary data dir) on loopback and prints figures;
it asserts nothing. The burst goes to its own subnet so the throughput run's jobs do not interfere, and
the script reports how many of the burst's jobs were applied (the aim: one per identity+netuid).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from credentials import mint_key
from servers import free_port

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 16
DURATION = 10
BURST = 1000
BURST_CONCURRENCY = 32
BURST_NETUID = 2
HOTKEYS = 256


# Filled in main(): an API key with the weights and neurons scopes, the credential a validator sends.
AUTH: dict[str, str] = {}


def server_env(data_dir: Path, workers: int) -> dict[str, str]:
    env = {
        **os.environ,
        "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(data_dir),
        "PYLON_LOCAL_NETUIDS": "1,2",
        "PYLON_LOCAL_NEURONS": str(HOTKEYS),
        "PYLON_LOCAL_BLOCK_TIME": "0.5",
        "PYLON_WORKERS": str(workers),
        "PYLON_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = server_env(data_dir, workers)
    log = (data_dir / "serve.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"pylon serve exited: {(data_dir / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("pylon serve did not start within 60s")


def hotkeys(url: str, netuid: int) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/api/v1/subnet/{netuid}/neurons/latest", headers=AUTH, timeout=10)
        if response.status_code == 200:
            return list(response.json()["neurons"])[:HOTKEYS]
        time.sleep(0.5)
    raise SystemExit(f"no neurons for subnet {netuid}: {response.status_code} {response.text[:200]}")


def run_wrk(url: str, body: bytes, workdir: Path) -> dict[str, float]:
    script = workdir / "put.lua"
    script.write_text(
        'wrk.method = "PUT"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "{AUTH["Authorization"]}"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    output = subprocess.run(
        [
            shutil.which("wrk") or "wrk",
            "-t2",
            f"-c{CONCURRENCY}",
            f"-d{DURATION}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=DURATION + 30,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)

    def latency(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", output)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rate,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0,
    }


async def run_python_load(url: str, body: bytes) -> dict[str, float]:
    """Fallback when wrk is missing: CONCURRENCY loops for DURATION seconds."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + DURATION
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:

        async def loop() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await client.put(
                    url, content=body, headers={"content-type": "application/json", **AUTH}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 202

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
    }


async def burst(url: str, keys: list[str]) -> tuple[float, list[int]]:
    """BURST PUTs, each with different weights, BURST_CONCURRENCY at a time."""
    semaphore = asyncio.Semaphore(BURST_CONCURRENCY)
    ids: list[int] = []
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=BURST_CONCURRENCY), timeout=30
    ) as client:

        async def one(i: int) -> None:
            async with semaphore:
                weights = {key: float((i + n) % 7 + 1) for n, key in enumerate(keys)}
                response = await client.put(url, json={"weights": weights}, headers=AUTH)
                if response.status_code == 202:
                    ids.append(response.json()["job_id"])

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(BURST)))
        return time.monotonic() - started, ids


def statuses(db: Path, netuid: int) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM weights_job WHERE netuid = ? GROUP BY status", (netuid,)
        ).fetchall()
    return dict(rows)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pylon-bench-weights-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    scopes = ["weights:write", "weights:read", "neurons:read"]
    AUTH["Authorization"] = f"Bearer {mint_key(server_env(workdir, workers), scopes)}"
    process = start_server(workdir, port, workers)
    try:
        keys = hotkeys(base, 1)
        body = json.dumps({"weights": {key: float(i % 10 + 1) for i, key in enumerate(keys)}}).encode()
        put_url = f"{base}/api/v1/subnet/1/weights"
        tool = "wrk" if shutil.which("wrk") else "python"
        # Warm-up: the first PUTs pay for connections and the metagraph view.
        for _ in range(20):
            httpx.put(put_url, content=body, headers={"content-type": "application/json", **AUTH}, timeout=10)
        result = (
            run_wrk(put_url, body, workdir) if tool == "wrk" else asyncio.run(run_python_load(put_url, body))
        )
        print(
            f"PUT weights ({len(keys)} hotkeys), concurrency {CONCURRENCY}, {DURATION}s, "
            f"{workers} worker(s), {tool}:"
        )
        print(
            f"  {result['rps']:.0f} requests/s   p50 {result['p50_ms']:.2f} ms   "
            f"p99 {result['p99_ms']:.2f} ms"
            f"   non-202: {int(result['errors'])}"
        )

        burst_keys = hotkeys(base, BURST_NETUID)
        elapsed, ids = asyncio.run(burst(f"{base}/api/v1/subnet/{BURST_NETUID}/weights", burst_keys))
        print(
            f"burst: {len(ids)}/{BURST} PUTs accepted in {elapsed:.2f}s ({len(ids) / elapsed:.0f}/s), "
            f"subnet {BURST_NETUID}"
        )
        db = workdir / "pylon.sqlite3"
        deadline = time.monotonic() + 60
        counts = statuses(db, BURST_NETUID)
        while (counts.get("pending", 0) or counts.get("running", 0)) and time.monotonic() < deadline:
            time.sleep(0.5)
            counts = statuses(db, BURST_NETUID)
        applied = counts.get("set", 0) + counts.get("committed", 0)
        print(f"  jobs by status after the burst: {dict(sorted(counts.items()))}")
        print(f"  applied jobs for identity default + subnet {BURST_NETUID}: {applied} (of {len(ids)} PUTs)")
        last = httpx.get(f"{base}/api/v1/subnet/{BURST_NETUID}/weights/last", headers=AUTH, timeout=10)
        if last.status_code == 200:
            newest = max(ids) if ids else None
            print(
                f"  last applied job: {last.json()['job_id']} (newest PUT: {newest}), "
                f"block {last.json()['block']}"
            )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
