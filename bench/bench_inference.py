"""Inference proxy overhead: Pylon vs the backend called directly, measured side by side in one run.

Starts the fake model server (tests/fakes/model_server.py, granian, 1 worker) and `pylon serve` (1 worker)
in front of it, both on loopback, then measures with wrk (installed with apt-get when missing):
  - non-streamed chat completions at concurrency 1 and 32: requests/s, p50, p99, direct and through Pylon;
  - the same at concurrency 32 against a second fake that takes `--paced-latency` per answer (default 5 ms,
    near the 5,685 req/s direct of the issue's backend; the instant fake answers four times faster, so
    there the ratio measures CPU shared on 2 cores more than Pylon's cost);
  - time to the first streamed chunk, direct and through Pylon (sequential requests, median and p99);
  - the upstream client on its own: a bare pass-through proxy on httpx, on aiohttp and on Pylon's own
    client (app/inference/upstream.py) at concurrency 32.
Pylon is called with a minted API key (scope `inference`). Figures are medians of `--rounds` (default 3)
alternating wrk runs of `--duration` seconds (default 4); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from credentials import mint_key
from servers import ensure_wrk, free_port, wait_up

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "Say something short."}]})
LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%s"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %%f %%d %%d %%d %%d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), errors, summary.requests))
end
"""


def run_wrk(wrk: str, url: str, connections: int, duration: float, script: Path) -> dict[str, float]:
    threads = min(2, connections)
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), url]
    # A short warm-up fills connection pools on both hops before the measured run.
    subprocess.run([*args[:3], "-d1s", *args[4:]], capture_output=True, timeout=60, check=False)
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=False).stdout
    line = next((line for line in out.splitlines() if line.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    _, rps, p50, p99, errors, _requests = line.split()
    return {"rps": float(rps), "p50_ms": int(p50) / 1000, "p99_ms": int(p99) / 1000, "errors": int(errors)}


async def first_chunk_times(url: str, count: int, authorization: str) -> list[float]:
    import aiohttp

    body = json.dumps({**json.loads(BODY), "stream": True}).encode()
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            headers = {"Content-Type": "application/json", "Authorization": authorization}
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}: {await response.read()!r}")
                async for _chunk in response.content.iter_any():
                    times.append((time.perf_counter() - started) * 1000)
                    break
                await response.read()
    return times


def compare(
    wrk: str, direct: str, through: str, connections: int, options: argparse.Namespace, script: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of alternating wrk rounds, direct then through Pylon, so drift in the machine's load hits
    both sides alike."""
    samples: dict[str, list[dict[str, float]]] = {"direct": [], "pylon": []}
    for _ in range(options.rounds):
        for name, base in (("direct", direct), ("pylon", through)):
            url = f"{base}/v1/chat/completions"
            samples[name].append(run_wrk(wrk, url, connections, options.duration, script))
    d, p = (
        {key: statistics.median(s[key] for s in samples[name]) for key in samples[name][0]}
        for name in ("direct", "pylon")
    )
    return d, p


def print_pair(connections: int, d: dict[str, float], p: dict[str, float]) -> None:
    for label, r in (("direct", d), ("pylon", p)):
        figures = f"{r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6.0f}"
        print(f"{connections:>11} {label:>8} {figures}")
    print(
        f"{'':>11} {'->':>8} pylon/direct throughput {p['rps'] / d['rps']:.0%}, "
        f"added p50 {p['p50_ms'] - d['p50_ms']:+.2f} ms"
    )


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def granian(target: str, port: int, cwd: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        target,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds per side (medians)")
    parser.add_argument("--ttfc-requests", type=int, default=200)
    parser.add_argument("--skip-clients", action="store_true", help="skip the bare-proxy client comparison")
    parser.add_argument(
        "--paced-latency",
        type=float,
        default=0.005,
        help="seconds the paced backend takes per answer (0.005 puts it near the issue's 5,685 req/s direct)",
    )
    options = parser.parse_args()

    wrk = ensure_wrk()
    if wrk is None:
        print("bench_inference: wrk is not installed and could not be installed; skipped")
        return
    workdir = Path(tempfile.mkdtemp(prefix="pylon-bench-inference-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        fake_port, pylon_port = free_port(), free_port()
        base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        fake = start(
            granian("tests.fakes.model_server:app", fake_port, ROOT), base_env, ROOT, workdir / "fake.log"
        )
        processes.append(fake)
        direct = f"http://127.0.0.1:{fake_port}"
        wait_up(f"{direct}/v1/models", fake)
        # A second backend that takes a fixed time per answer, as a model server does: the issue's own
        # backend answered 5,685 req/s at concurrency 32, four times fewer than the instant fake.
        paced_port = free_port()
        paced_env = {**base_env, "FAKE_LATENCY": str(options.paced_latency), "FAKE_MODELS": "paced-model"}
        paced = start(
            granian("tests.fakes.model_server:app", paced_port, ROOT), paced_env, ROOT, workdir / "paced.log"
        )
        processes.append(paced)
        paced_direct = f"http://127.0.0.1:{paced_port}"
        wait_up(f"{paced_direct}/v1/models", paced)

        pylon_env = {
            **base_env,
            "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
            "PYLON_DATA_DIR": str(workdir / "data"),
            "PYLON_LOG_LEVEL": "WARNING",
            "PYLON_BACKENDS": json.dumps(
                [{"name": "fake", "base_url": direct}, {"name": "paced", "base_url": paced_direct}]
            ),
            # test.env's 0.2 s simulated blocks would keep Pylon's worker busy; the bench measures the proxy.
            "PYLON_LOCAL_BLOCK_TIME": "60",
        }
        # An API key with scope `inference`, the credential an app sends (the direct calls carry it too).
        authorization = f"Bearer {mint_key(pylon_env, ['inference'])}"
        pylon = start(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(pylon_port)],
            pylon_env,
            ROOT,
            workdir / "pylon.log",
        )
        processes.append(pylon)
        through = f"http://127.0.0.1:{pylon_port}"
        wait_up(f"{through}/health", pylon)

        script = workdir / "post.lua"
        script.write_text(LUA % (BODY, authorization))
        rows = [
            (connections, *compare(wrk, direct, through, connections, options, script))
            for connections in (1, 32)
        ]

        paced_script = workdir / "paced.lua"
        paced_script.write_text(LUA % (BODY.replace("fake-model", "paced-model"), authorization))
        paced_d, paced_p = compare(wrk, paced_direct, through, 32, options, paced_script)

        ttfc_direct, ttfc_pylon = [], []
        for _ in range(2):  # interleaved halves so drift hits both sides alike
            ttfc_direct += asyncio.run(
                first_chunk_times(f"{direct}/v1/chat/completions", options.ttfc_requests // 2, authorization)
            )
            ttfc_pylon += asyncio.run(
                first_chunk_times(f"{through}/v1/chat/completions", options.ttfc_requests // 2, authorization)
            )

        clients = []
        if not options.skip_clients:
            for name in ("httpx", "aiohttp", "upstream"):
                port = free_port()
                proxy = start(
                    granian(f"inference_proxies:{name}_app", port, ROOT / "bench"),
                    {**base_env, "PROXY_UPSTREAM": direct, "PYTHONPATH": str(ROOT)},
                    ROOT / "bench",
                    workdir / f"{name}.log",
                )
                processes.append(proxy)
                wait_up(f"http://127.0.0.1:{port}/", proxy)
                clients.append(
                    (name, run_wrk(wrk, f"http://127.0.0.1:{port}/", 32, options.duration, script))
                )
                proxy.terminate()
                proxy.wait(timeout=15)

        print(
            "\n== inference proxy: non-streamed chat completions"
            f" (wrk, loopback, 1 granian worker each, medians of {options.rounds} rounds) =="
        )
        print(f"{'concurrency':>11} {'path':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for connections, d, p in rows:
            print_pair(connections, d, p)
        print(
            "\n== the same at concurrency 32 against a paced backend"
            f" ({options.paced_latency * 1000:g} ms per answer, near the issue's 5,685 req/s direct) =="
        )
        print_pair(32, paced_d, paced_p)
        print("\n== time to first streamed chunk (sequential, ms) ==")
        for label, times in (("direct", ttfc_direct), ("pylon", ttfc_pylon)):
            ordered = sorted(times)
            p99 = ordered[int(len(ordered) * 0.99) - 1]
            print(f"{label:>8} median {statistics.median(ordered):.2f}  p99 {p99:.2f}")
        print(
            f"{'->':>8} added median {statistics.median(ttfc_pylon) - statistics.median(ttfc_direct):+.2f} ms"
        )
        if clients:
            print("\n== upstream client alone: bare pass-through proxy, concurrency 32 ==")
            for name, r in clients:
                latency = f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                print(f"{name:>8} {r['rps']:>9.0f} req/s  {latency}  errors {r['errors']}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
