"""What usage accounting costs: per request and per flush, per-minute buckets against the old row per request.

Prints, measured side by side in one run (alternating rounds, medians):
1. per finished request, in-process: the old path (a dict row with a datetime per request, appended to a
   list; kept below as `old_account`) against `account()` adding to its bucket;
2. writing N requests to a SQLite file (and PostgreSQL with --postgres URL): the old executemany of N rows
   into the old table against the upsert of their buckets;
3. with --old-ref REF (a git ref holding the old code) and wrk installed: requests/s over HTTP of an API-keyed
   route against an open route, under granian (1 worker), for REF and for this tree.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from advanced_alchemy.types import DateTimeUTC  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402

from app.auth.context import Principal, Usage  # noqa: E402
from app.keys.models import ApiKey  # noqa: E402
from app.keys.ratelimit import RateLimiter  # noqa: E402
from app.keys.runtime import RECORDED_KINDS, KeysRuntime  # noqa: E402
from app.keys.usage_buffer import UsageRecorder  # noqa: E402
from app.settings import load_settings  # noqa: E402

KEYS = [f"key{i:02d}" for i in range(20)]
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
STATUSES = [200, 200, 200, 429]


def scopes(count: int) -> list[dict[str, Any]]:
    """Finished requests as the edge sees them (caller, usage, method, route, status): 20 keys, 3 routes,
    mostly 200."""
    result = []
    for i in range(count):
        principal = Principal(kind="api_key", id=KEYS[i % len(KEYS)], scopes=frozenset({"inference"}))
        usage = Usage(model="small", backend="b", prompt_tokens=12, completion_tokens=30)
        result.append(
            {
                "type": "http",
                "method": "POST",
                "path_template": ROUTES[i % len(ROUTES)],
                "principal": principal,
                "usage": usage,
                "status": STATUSES[i % len(STATUSES)],
            }
        )
    return result


# --- the old path, kept to measure it beside the new one -------------------------------------------------

OLD_TABLE = sa.Table(
    "api_key_usage",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("route", sa.String(300), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Index("ix_api_key_usage_key_day", "key_id", "day"),
)


def old_account(
    scope: dict[str, Any], status: int, latency: float, limiter: RateLimiter, rows: list[Any]
) -> None:
    """The middleware's `finally` before buckets: `usage_row()` then charge and append."""
    principal = scope["principal"]
    if principal is None or principal.kind not in RECORDED_KINDS:
        return
    usage = scope["usage"]
    now = dt.datetime.now(dt.UTC)
    row = {
        "key_id": principal.id,
        "kind": principal.kind,
        "day": now.date(),
        "created_at": now,
        "method": scope.get("method", ""),
        "route": scope.get("path_template") or "<unmatched>",
        "status": status,
        "latency_ms": round(latency * 1000, 3),
        "model": usage.model if usage else None,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
    }
    tokens = row["prompt_tokens"] + row["completion_tokens"]
    if row["kind"] == "api_key":
        limiter.charge_tokens(row["key_id"], tokens)
    rows.append(row)


async def old_write(sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
    """The old `UsageRecorder._write`: executemany of the rows in batches of 500, then last_used_at."""
    last_used: dict[str, dt.datetime] = {}
    for row in rows:
        last_used[row["key_id"]] = max(row["created_at"], last_used.get(row["key_id"], row["created_at"]))
    statement = sa.insert(OLD_TABLE)
    async with sessions() as session:
        for start in range(0, len(rows), 500):
            await session.execute(statement, rows[start : start + 500])
        for key_id, used_at in last_used.items():
            await session.execute(
                sa.update(ApiKey)
                .where(ApiKey.id == key_id)
                .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < used_at))
                .values(last_used_at=used_at)
            )
        await session.commit()


# --- 1. per request -------------------------------------------------------------------------------------


class Runtime:
    """What `KeysRuntime.account()` needs of a KeysRuntime: its limiter and usage buffer."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.limiter = RateLimiter()
        self.usage = UsageRecorder(sessions)


def new_path(scope: dict[str, Any], status: int, latency: float, runtime: Runtime) -> None:
    """The edge's `finally` now (app/http/edge.py) calling `KeysRuntime.account()`."""
    principal = scope["principal"]
    if principal is not None:
        # The stand-in has the KeysRuntime's limiter and usage, all that account() touches.
        KeysRuntime.account(
            cast(KeysRuntime, runtime),
            principal,
            scope["usage"],
            scope["method"],
            scope["path_template"],
            status,
            latency,
        )


def per_request(sessions: async_sessionmaker[AsyncSession], rounds: int = 7, per_round: int = 50_000) -> None:
    prepared = scopes(per_round)
    samples: dict[str, list[float]] = {"old: row per request": [], "new: account() into a bucket": []}
    for _ in range(rounds):
        limiter, rows = RateLimiter(), cast(list[Any], [])
        started = time.perf_counter()
        for scope in prepared:
            old_account(scope, scope["status"], 0.0004, limiter, rows)
        samples["old: row per request"].append((time.perf_counter() - started) / per_round)
        runtime = Runtime(sessions)
        started = time.perf_counter()
        for scope in prepared:
            new_path(scope, scope["status"], 0.0004, runtime)
        samples["new: account() into a bucket"].append((time.perf_counter() - started) / per_round)
    print(f"1. per finished request, in-process ({rounds} alternating rounds of {per_round} calls, medians)")
    old = statistics.median(samples["old: row per request"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"   {name:32s} {median * 1e9:7.0f} ns per call   (x{median / old:.2f} of old)")
    held = f"old {len(rows)} row dicts, new {len(runtime.usage)} buckets"
    print(f"   held in memory after {per_round} requests: {held}")


# --- 2. per flush ----------------------------------------------------------------------------------------


async def per_flush(engine: AsyncEngine, label: str, requests: int = 20_000, rounds: int = 5) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as connection:
        await connection.run_sync(OLD_TABLE.metadata.create_all)
    prepared = scopes(requests)
    old_times: list[float] = []
    new_times: list[float] = []
    buckets = 0
    for _ in range(rounds):
        rows: list[Any] = []
        limiter = RateLimiter()
        for scope in prepared:
            old_account(scope, scope["status"], 0.0004, limiter, rows)
        started = time.perf_counter()
        await old_write(sessions, rows)
        old_times.append(time.perf_counter() - started)
        runtime = Runtime(sessions)
        for scope in prepared:
            new_path(scope, scope["status"], 0.0004, runtime)
        buckets = len(runtime.usage)
        started = time.perf_counter()
        await runtime.usage.flush()
        new_times.append(time.perf_counter() - started)
    old, new = statistics.median(old_times), statistics.median(new_times)
    mix = "20 keys x 3 routes x 2 statuses, one minute"
    print(f"2. writing {requests} requests ({mix}), {label}, {rounds} alternating rounds (medians)")
    per = old / requests * 1e6
    print(f"   old: {requests} rows, executemany  {old * 1e3:8.1f} ms  ({per:6.2f} us per request)")
    per = new / requests * 1e6
    print(f"   new: {buckets} bucket upserts       {new * 1e3:8.1f} ms  ({per:6.2f} us per request)")
    print(f"   new / old: x{new / old:.3f}")


async def sqlite_flush(data_dir: Path) -> None:
    from app.db import create_engine

    engine = create_engine(load_settings(environment(data_dir)))
    try:
        await per_flush(engine, "SQLite file (WAL)")
    finally:
        await engine.dispose()


async def postgres_flush(url: str) -> None:
    import asyncpg

    from app.db import create_engine, migrations

    name = f"pylon_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        settings = load_settings(
            {**environment(Path(tempfile.gettempdir())), "PYLON_DB_URL": f"{base}/{name}"}
        )
        await asyncio.to_thread(lambda: migrations(settings).upgrade("head"))
        engine = create_engine(settings)
        try:
            await per_flush(engine, "PostgreSQL (loopback)")
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- 3. HTTP, old tree against this one ----------------------------------------------------------------


def environment(data_dir: Path) -> dict[str, str]:
    return {
        "PYLON_ENV_FILE": str(ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(data_dir),
        "PYLON_LOG_LEVEL": "ERROR",
    }


def over_http(old_ref: str, rounds: int = 5, seconds: int = 4) -> None:
    if not shutil.which("wrk"):
        print("3. HTTP: wrk not installed; skipped")
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_auth import free_port, wrk

    workdir = Path(tempfile.mkdtemp(prefix="pylon-bench-usage-"))
    servers: list[subprocess.Popen[bytes]] = []
    try:
        old_tree = workdir / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", old_ref], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        urls: dict[str, str] = {}
        for label, tree in ((f"old ({old_ref})", old_tree), ("new (this tree)", ROOT)):
            env = {**os.environ, **environment(workdir / f"data-{label.split()[0]}"), "PYTHONPATH": str(tree)}
            setup = (
                "import asyncio, sys\n"
                "from app.db import migrations\nfrom app.settings import load_settings\n"
                "from app.keys.schemas import KeyCreate\nfrom app.keys.service import KeyService\n"
                "from app.db import create_engine\nfrom sqlalchemy.ext.asyncio import async_sessionmaker\n"
                "s = load_settings()\nmigrations(s).upgrade('head')\n"
                "async def main():\n"
                "    e = create_engine(s)\n"
                "    async with async_sessionmaker(e, expire_on_commit=False)() as session:\n"
                "        c = await KeyService(session).create(KeyCreate(name='b', scopes=['inference']))\n"
                "    await e.dispose()\n"
                "    print(c.key)\n"
                "asyncio.run(main())\n"
            )
            key = subprocess.run(
                [sys.executable, "-c", setup], cwd=tree, env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
            port = free_port()
            servers.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
                        *("--workers", "1", "--host", "127.0.0.1", "--port", str(port)),
                        *("--log-level", "error", "bench.bench_auth:bench_app"),
                    ],
                    cwd=tree,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls[label] = f"http://127.0.0.1:{port}|{key}"
        import httpx

        for url in urls.values():
            base = url.split("|")[0]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/bench/open", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, url in urls.items():
                base, key = url.split("|")
                results.setdefault(f"{label} open", []).append(wrk(f"{base}/bench/open", [], seconds)[0])
                results.setdefault(f"{label} API key", []).append(
                    wrk(f"{base}/bench/keyed", [f"Authorization: Bearer {key}"], seconds)[0]
                )
        print(
            f"3. HTTP under granian, 1 worker, wrk -c32, {rounds} alternating rounds of {seconds}s (medians)"
        )
        for label in urls:
            open_rps = statistics.median(results[f"{label} open"])
            key_rps = statistics.median(results[f"{label} API key"])
            print(
                f"   {label:22s} open {open_rps:7.0f} req/s   API key {key_rps:7.0f} req/s"
                f"   ({key_rps / open_rps:.0%} of open)"
            )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also time the flush on this PostgreSQL server (admin URL)")
    parser.add_argument("--old-ref", help="git ref of the old code, for the HTTP comparison (needs wrk)")
    args = parser.parse_args()

    from app.db import create_engine, migrations

    data_dir = Path(tempfile.mkdtemp(prefix="pylon-bench-usage-"))
    try:
        settings = load_settings(environment(data_dir))
        migrations(settings).upgrade("head")
        print(f"bench_usage: {os.cpu_count()} cores")

        async def in_process() -> None:
            engine = create_engine(settings)
            try:
                per_request(async_sessionmaker(engine, expire_on_commit=False))
            finally:
                await engine.dispose()

        asyncio.run(in_process())
        asyncio.run(sqlite_flush(data_dir))
        if args.postgres:
            asyncio.run(postgres_flush(args.postgres))
        if args.old_ref:
            over_http(args.old_ref)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
