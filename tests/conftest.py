"""Shared fixtures: settings on a SQLite file, a PostgreSQL database per test, the app, a live server."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import migrations
from app.main import create_app
from app.settings import Settings, load_settings
from tests.client import PylonTestClient

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("PYLON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SettingsFactory = Callable[..., Settings]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(data_dir: Path) -> dict[str, str]:
    """The variables every test starts from: envs/test.env's values, a private data dir."""
    env = {"PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"), "PYLON_DATA_DIR": str(data_dir)}
    return env


@pytest.fixture
def settings_factory(tmp_path: Path) -> SettingsFactory:
    """`settings_factory(PYLON_X="1")` builds settings like a worker would, on a SQLite file in tmp_path."""

    def build(**env: str) -> Settings:
        return load_settings({**base_env(tmp_path), **env})

    return build


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory()


def _postgres_reachable() -> str | None:
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL admin URL; skips (fails under CI) when no server answers."""
    problem = _postgres_reachable()
    if problem:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({problem})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the real server for this test, dropped afterwards."""
    import asyncpg

    name = f"pylon_test_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(postgres_server)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(settings: Settings, revision: str = "head") -> None:
    migrations(settings).upgrade(revision)


@pytest.fixture
def migrated_settings(settings: Settings) -> Settings:
    """Settings whose SQLite database has every migration applied (run in a thread: alembic owns its loop)."""
    migrate(settings)
    return settings


@pytest.fixture
def app(migrated_settings: Settings) -> Litestar:
    return create_app(migrated_settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient]:
    async with PylonTestClient(app=app) as test_client:
        yield test_client


class LiveServer:
    """A real `pylon serve` subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, timeout: float = 30.0) -> LiveServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port), *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pylon serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pylon serve did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None) -> None:
        if self.process and self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """`live_server_factory(PYLON_X="1").start()` runs `pylon serve`; every server is stopped at teardown."""
    servers: list[LiveServer] = []

    def build(**env: str) -> LiveServer:
        # The caller's own PYLON_* variables stay out: the server sees the test settings only.
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
        full_env = {**inherited, **base_env(tmp_path / "data"), **env}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        server = LiveServer(full_env, free_port(), tmp_path / f"serve-{len(servers)}.log")
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()
