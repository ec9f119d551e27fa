"""What auth costs: an authorised request vs the same route open, and the sr25519 verify behind Epistula.

Prints, measured side by side in one run (alternating rounds, medians), on loopback only:
1. in-process ASGI latency of the same handler open / with an API key / with the admin token / with an
   Epistula signature (isolates the guard's cost from HTTP);
2. over HTTP under granian (1 worker) with wrk if installed: requests/s and p50 open vs API key;
3. sr25519 verify per request, and the whole Epistula check (hash, verify, replay set, directory).
Asserts nothing; bounded to about a minute.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bittensor_wallet import Keypair  # noqa: E402
from litestar import Litestar, get  # noqa: E402
from servers import free_port  # noqa: E402

from app.auth.epistula import EpistulaVerifier, HotkeyInfo, sign_request  # noqa: E402
from app.auth.scopes import Scope  # noqa: E402
from app.settings import EpistulaSettings, load_settings  # noqa: E402

BODY = b'{"status":"ok"}'
PYLON = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
VALIDATOR = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


@get("/bench/open", opt={"open": "benchmark"}, sync_to_thread=False, media_type="application/json")
def open_route() -> bytes:
    return BODY


@get(
    "/bench/keyed",
    opt={"scope": Scope.INFERENCE, "epistula": True},
    sync_to_thread=False,
    media_type="application/json",
)
def keyed_route() -> bytes:
    return BODY


def bench_app() -> Litestar:
    """granian's factory: the real app plus the two benchmark routes."""
    from app.main import create_app

    app = create_app()
    app.register(open_route)
    app.register(keyed_route)
    return app


def environment(data_dir: Path) -> dict[str, str]:
    return {
        "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(data_dir),
        "PYLON_LOG_LEVEL": "ERROR",
        "PYLON_EPISTULA_HOTKEY": PYLON.ss58_address,
        "PYLON_EPISTULA_HOTKEYS": VALIDATOR.ss58_address,
    }


async def create_key(env: dict[str, str]) -> str:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import create_engine
    from app.keys.schemas import KeyCreate
    from app.keys.service import KeyService

    engine = create_engine(load_settings(env))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            created = await KeyService(session).create(KeyCreate(name="bench", scopes=[Scope.INFERENCE]))
    finally:
        await engine.dispose()
    return created.key


# --- 1. in-process ASGI ---------------------------------------------------------------------------------


async def asgi_call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return status


async def in_process(env: dict[str, str], key: str, rounds: int = 5, per_round: int = 1500) -> None:
    os.environ.update(env)
    app = bench_app()
    variants: dict[str, Any] = {
        "open route": ("/bench/open", lambda: []),
        "API key": ("/bench/keyed", lambda: [(b"authorization", f"Bearer {key}".encode())]),
        "admin token": ("/bench/keyed", lambda: [(b"authorization", b"Bearer test-admin-token")]),
        "Epistula": (
            "/bench/keyed",
            lambda: [
                (k.lower().encode(), v.encode())
                for k, v in sign_request(VALIDATOR, b"", PYLON.ss58_address).items()
            ],
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    async with app.lifespan():
        for name, (path, headers) in variants.items():
            assert await asgi_call(app, path, headers()) == 200, name
        for _ in range(rounds):
            for name, (path, make_headers) in variants.items():
                # Signing happens outside the timed section: a caller pays it, not Pylon.
                prepared = [make_headers() for _ in range(per_round)]
                for headers in prepared:
                    started = time.perf_counter()
                    await asgi_call(app, path, headers)
                    samples[name].append(time.perf_counter() - started)
    base = statistics.median(samples["open route"])
    print(
        "1. in-process ASGI, same handler (median of", rounds * per_round, "calls each, alternating rounds)"
    )
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"   {name:12s} {median * 1e6:8.1f} us   (+{(median - base) * 1e6:6.1f} us, x{median / base:.2f})"
        )


# --- 2. HTTP under granian ----------------------------------------------------------------------------


def wrk(url: str, headers: list[str], seconds: int) -> tuple[float, float]:
    header_args = [arg for header in headers for arg in ("-H", header)]
    args = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", *header_args, url]
    # Fixed arguments and loopback URLs only.
    output = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    p50_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p50_ms


def over_http(env: dict[str, str], key: str, rounds: int = 3, seconds: int = 3) -> None:
    if not shutil.which("wrk"):
        print("2. HTTP: wrk not installed (apt-get install -y wrk); skipped")
        return
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "bench.bench_auth:bench_app",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/bench/open", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        results: dict[str, list[tuple[float, float]]] = {"open route": [], "API key": []}
        for _ in range(rounds):
            results["open route"].append(wrk(f"http://127.0.0.1:{port}/bench/open", [], seconds))
            results["API key"].append(
                wrk(f"http://127.0.0.1:{port}/bench/keyed", [f"Authorization: Bearer {key}"], seconds)
            )
        print(
            f"2. HTTP under granian, 1 worker, wrk -c32, {rounds} alternating rounds of {seconds}s (medians)"
        )
        base_rps = statistics.median(r for r, _ in results["open route"])
        for name, values in results.items():
            rps = statistics.median(r for r, _ in values)
            p50 = statistics.median(p for _, p in values)
            print(f"   {name:12s} {rps:9.0f} req/s  p50 {p50:6.2f} ms   ({rps / base_rps:.0%} of open)")
    finally:
        server.terminate()
        server.wait(timeout=15)


# --- 3. sr25519 -------------------------------------------------------------------------------------


async def epistula_cost(iterations: int = 2000) -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    headers = sign_request(VALIDATOR, body, PYLON.ss58_address)
    message = f"{__import__('hashlib').sha256(body).hexdigest()}.{headers['Epistula-Uuid']}."
    message += f"{headers['Epistula-Timestamp']}.{PYLON.ss58_address}"
    signature = bytes.fromhex(headers["Epistula-Request-Signature"][2:])
    verifier_key = Keypair(ss58_address=VALIDATOR.ss58_address)
    started = time.perf_counter()
    for _ in range(iterations):
        verifier_key.verify(message.encode(), signature)
    verify = (time.perf_counter() - started) / iterations

    class Directory:
        async def lookup(self, netuid: int, hotkey: str) -> HotkeyInfo | None:
            return HotkeyInfo(validator_permit=True)

    verifier = EpistulaVerifier(EpistulaSettings(hotkey=PYLON.ss58_address), default_netuid=1)
    signed = [
        {k.lower(): v for k, v in sign_request(VALIDATOR, body, PYLON.ss58_address).items()}
        for _ in range(iterations)
    ]
    directory = Directory()
    started = time.perf_counter()
    for one in signed:
        await verifier.verify(one, body, directory)
    whole = (time.perf_counter() - started) / iterations
    print("3. Epistula")
    print(f"   sr25519 verify (cached Keypair)  {verify * 1e6:7.1f} us per request")
    print(
        f"   whole check (headers, sha256, verify, replay set, directory)  {whole * 1e6:7.1f} us per request"
    )


def main() -> None:
    from app.db import migrations

    data_dir = Path(tempfile.mkdtemp(prefix="pylon-bench-auth-"))
    try:
        env = environment(data_dir)
        migrations(load_settings(env)).upgrade("head")
        key = asyncio.run(create_key(env))
        print(f"bench_auth: {os.cpu_count()} cores, SQLite, one key with scope inference")
        asyncio.run(in_process(env, key))
        over_http(env, key)
        asyncio.run(epistula_cost())
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
