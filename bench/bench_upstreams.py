"""Upstream proxy overhead: an internal server called directly and through Pylon's prefix, side by side.

Starts the fake internal server (tests/fakes/upstream_server.py, aiohttp, one process) and `pylon serve`
(1 worker) with `PYLON_UPSTREAMS=[{"prefix": "/train", ...}]` in front of it, both on loopback, then:
  - small GETs (`/` direct, `/train/` through Pylon, an API key with scope `upstream`) with wrk at
    concurrency 1 and 32: requests/s, p50, p99; medians of `--rounds` alternating runs;
  - streaming throughput in MB/s: `--mb` MiB downloaded and uploaded (a streamed body of 1 MiB pieces),
    direct and through Pylon, medians of the rounds.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from credentials import mint_key
from servers import ensure_wrk, free_port, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LUA = """
wrk.headers["Authorization"] = "%s"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %%f %%d %%d %%d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), errors))
end
"""


def run_wrk(wrk: str, url: str, connections: int, duration: float, script: Path) -> dict[str, float]:
    args = [
        wrk,
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "-s",
        str(script),
    ]
    subprocess.run([*args[:3], "-d1s", *args[4:], url], capture_output=True, timeout=60, check=False)
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=duration + 60, check=False
    ).stdout
    line = next((line for line in out.splitlines() if line.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    _, rps, p50, p99, errors = line.split()
    return {"rps": float(rps), "p50_ms": int(p50) / 1000, "p99_ms": int(p99) / 1000, "errors": int(errors)}


async def transfer(url: str, mib: int, authorization: str) -> tuple[float, float]:
    """(download MB/s, upload MB/s) of `mib` MiB each way."""
    import aiohttp

    headers = {"Authorization": authorization}
    piece = b"\x5a" * MIB

    async def body():  # type: ignore[no-untyped-def]
        for _ in range(mib):
            yield piece

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        received = 0
        async with session.get(f"{url}/download?mb={mib}", headers=headers) as response:
            async for chunk in response.content.iter_any():
                received += len(chunk)
        down = received / MIB / (time.perf_counter() - started)
        started = time.perf_counter()
        async with session.post(
            f"{url}/upload", data=body(), headers={**headers, "Content-Length": str(mib * MIB)}
        ) as response:
            sent = (await response.json())["size"]
        up = sent / MIB / (time.perf_counter() - started)
    if received != mib * MIB or sent != mib * MIB:
        raise RuntimeError(f"{url}: moved {received} down and {sent} up, expected {mib * MIB} each")
    return down, up


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="MiB moved each way per throughput round")
    options = parser.parse_args()

    wrk = ensure_wrk()
    if wrk is None:
        print("bench_upstreams: wrk is not installed and could not be installed; skipped")
        return
    workdir = Path(tempfile.mkdtemp(prefix="pylon-bench-upstreams-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        fake_port, pylon_port = free_port(), free_port()
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.upstream_server", "--port", str(fake_port)],
            cwd=ROOT,
            env=base_env,
            stdout=(workdir / "fake.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(fake)
        direct = f"http://127.0.0.1:{fake_port}"
        wait_up(f"{direct}/", fake)
        pylon_env = {
            **base_env,
            "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
            "PYLON_DATA_DIR": str(workdir / "data"),
            "PYLON_LOG_LEVEL": "WARNING",
            "PYLON_LOCAL_BLOCK_TIME": "60",
            "PYLON_UPSTREAMS": json.dumps([{"prefix": "/train", "url": direct}]),
        }
        authorization = f"Bearer {mint_key(pylon_env, ['upstream'])}"
        pylon = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(pylon_port)],
            cwd=ROOT,
            env=pylon_env,
            stdout=(workdir / "pylon.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(pylon)
        through = f"http://127.0.0.1:{pylon_port}/train"
        # Under load a start (migrations, the simulated chain) can take a while.
        wait_up(f"http://127.0.0.1:{pylon_port}/health", pylon, timeout=180)

        script = workdir / "get.lua"
        script.write_text(LUA % authorization)
        latency: list[tuple[int, dict[str, float], dict[str, float]]] = []
        for connections in (1, 32):
            samples: dict[str, list[dict[str, float]]] = {"direct": [], "pylon": []}
            for _ in range(options.rounds):
                samples["direct"].append(run_wrk(wrk, f"{direct}/", connections, options.duration, script))
                samples["pylon"].append(run_wrk(wrk, f"{through}/", connections, options.duration, script))
            latency.append((connections, median_of(samples["direct"]), median_of(samples["pylon"])))

        moved: dict[str, list[tuple[float, float]]] = {"direct": [], "pylon": []}
        for _ in range(options.rounds):
            moved["direct"].append(asyncio.run(transfer(direct, options.mb, authorization)))
            moved["pylon"].append(asyncio.run(transfer(through, options.mb, authorization)))

        print(
            "\n== upstream proxy: small GETs (wrk, loopback, fake internal server and 1 Pylon worker,"
            f" medians of {options.rounds} rounds) =="
        )
        print(f"{'concurrency':>11} {'path':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for connections, d, p in latency:
            for label, r in (("direct", d), ("pylon", p)):
                figures = f"{r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6.0f}"
                print(f"{connections:>11} {label:>8} {figures}")
            print(
                f"{'':>11} {'->':>8} pylon/direct throughput {p['rps'] / d['rps']:.0%}, "
                f"added p50 {p['p50_ms'] - d['p50_ms']:+.2f} ms"
            )
        print(f"\n== streaming throughput, {options.mb} MiB each way (MB/s, medians) ==")
        print(f"{'path':>8} {'download':>9} {'upload':>9}")
        for label in ("direct", "pylon"):
            down = statistics.median(d for d, _ in moved[label])
            up = statistics.median(u for _, u in moved[label])
            print(f"{label:>8} {down:>9.0f} {up:>9.0f}")
    finally:
        for process in processes:
            stop(process)


if __name__ == "__main__":
    main()
