"""GET /api/v1/subnet/1/neurons/latest (256 neurons): `pylon serve` against a bare ASGI app on granian,
and bittensor-pylon's `/api/v1/subnet/1/block/latest/neurons` beside them (called with the open-access
token, as its client calls it; target: within 5% of Pylon's own latest route).

All serve the same bytes, one granian worker each, measured side by side in one run with Debian's `wrk`
(installed with apt-get if missing) at concurrency 1 and 64, over loopback, in alternating rounds
(`BENCH_ROUNDS`, default 3, of `BENCH_SECONDS`, default 4). Pylon is called with a minted API key
(scope `neurons:read`), as validators call it. Prints medians of requests/s, p50 and p99
and the ratios (target: Pylon >= 70% of the bare app's requests/s; p99 at 64 <= 1.5x the bare app's).
Nothing is asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from credentials import mint_key
from servers import ensure_wrk, free_port, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/v1/subnet/1/neurons/latest"
PEER_PATH = "/api/v1/subnet/1/block/latest/neurons"
OPEN_TOKEN = "bench-open-access-token"
DURATION = int(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# Filled in main(): an API key with `neurons:read`, the credential a validator really sends.
AUTH: dict[str, str] = {}


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(wrk: str, url: str, connections: int, auth: str) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    result = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{DURATION}s",
            "--latency",
            "-H",
            f"Authorization: {auth}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=DURATION + 30,
        check=True,
    )
    out = result.stdout
    if "Requests/sec" not in out or "50%" not in out:
        print(f"unexpected wrk output for {url}:\n{out}\n{result.stderr}", file=sys.stderr)
        return {"rps": float("nan"), "p50": float("nan"), "p99": float("nan")}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "50%" also appears inside the Thread Stats line (e.g. "85.50%").
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"warning: {errors.group(1)} non-2xx answers from {url}", file=sys.stderr)
    return {"rps": rps, "p50": p50, "p99": p99}


def main() -> None:
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is not available; install it with `apt-get install -y wrk`")
    workdir = Path(tempfile.mkdtemp(prefix="pylon-bench-"))
    pylon_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYLON_ENV_FILE": str(ROOT / "envs" / "dev.env"),
        "PYLON_DATA_DIR": str(workdir / "data"),
        "PYLON_NETWORK": "local",
        "PYLON_LOCAL_NEURONS": "256",
        # One block per minute: the bench measures serving, not refreshing.
        "PYLON_LOCAL_BLOCK_TIME": "60",
        "PYLON_WORKERS": "1",
        "PYLON_LOG_LEVEL": "WARNING",
        "PYLON_LOG_FORMAT": "json",
        "PYLON_OPEN_ACCESS_TOKEN": OPEN_TOKEN,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    AUTH["Authorization"] = f"Bearer {mint_key(env, ['neurons:read'])}"
    log = (workdir / "pylon.log").open("wb")
    pylon = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(pylon_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    bare: subprocess.Popen[bytes] | None = None
    try:
        pylon_url = f"http://127.0.0.1:{pylon_port}{PATH}"
        wait_up(pylon_url, pylon, headers=AUTH, status=200)
        body = httpx.get(pylon_url, headers=AUTH).content
        body_file = workdir / "body.json"
        body_file.write_bytes(body)
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "bench.bare_app:app",
            ],
            cwd=ROOT,
            env={**env, "BENCH_BODY_FILE": str(body_file)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare_url = f"http://127.0.0.1:{bare_port}{PATH}"
        wait_up(bare_url, bare, status=200)
        assert httpx.get(bare_url).content == body
        peer_url = f"http://127.0.0.1:{pylon_port}{PEER_PATH}"
        peer_auth = f"Bearer {OPEN_TOKEN}"
        assert httpx.get(peer_url, headers={"Authorization": peer_auth}).content == body
        targets = (
            ("pylon", pylon_url, AUTH["Authorization"]),
            ("v1", peer_url, peer_auth),
            ("bare", bare_url, AUTH["Authorization"]),
        )
        print(
            f"GET {PATH}: {len(body)} bytes, 256 neurons, API key; 1 granian worker each;"
            f" medians of {ROUNDS} alternating wrk runs of {DURATION}s"
        )
        print(f"v1 = {PEER_PATH} on the same server, with the open-access token")
        print(f"{'concurrency':>11} {'server':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        results: dict[tuple[int, str], dict[str, float]] = {}
        warm = [wrk, "-t1", "-c4", "-d1s", "-H", f"Authorization: {AUTH['Authorization']}"]
        for _, url, _ in targets:
            subprocess.run([*warm, url], capture_output=True, timeout=30, check=False)
        for connections in (1, 64):
            # Alternating rounds, so drift in the machine's load hits both servers alike; medians reported.
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
            for _ in range(ROUNDS):
                for name, url, auth in targets:
                    rounds[name].append(run_wrk(wrk, url, connections, auth))
            for name, samples in rounds.items():
                figures = {k: statistics.median(s[k] for s in samples) for k in ("rps", "p50", "p99")}
                results[(connections, name)] = figures
                rps, p50, p99 = figures["rps"], figures["p50"], figures["p99"]
                print(f"{connections:>11} {name:>6} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}", flush=True)
        for connections in (1, 64):
            pylon_fig, bare_fig = results[(connections, "pylon")], results[(connections, "bare")]
            v1_fig = results[(connections, "v1")]
            print(
                f"concurrency {connections}: v1/pylon requests/s = {v1_fig['rps'] / pylon_fig['rps']:.0%}"
                f" (target 95-105%), v1/bare = {v1_fig['rps'] / bare_fig['rps']:.0%}"
            )
            print(
                f"concurrency {connections}: pylon/bare requests/s = {pylon_fig['rps'] / bare_fig['rps']:.0%}"
                f" (target >= 70%), p99 pylon/bare = {pylon_fig['p99'] / bare_fig['p99']:.2f}x"
                + (" (target <= 1.5x)" if connections == 64 else "")
            )
    finally:
        if bare is not None:
            stop(bare)
        stop(pylon)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
