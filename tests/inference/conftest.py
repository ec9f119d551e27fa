"""Fixtures for the inference tests: fake model servers as real processes, Pylon in front of them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from app.main import create_app
from app.settings import Settings
from tests.conftest import PROJECT_ROOT, SettingsFactory, free_port, migrate


class FakeBackend:
    """tests/fakes/model_server.py under granian on a free loopback port."""

    def __init__(self, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> FakeBackend:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.model_server", "--port", str(self.port)],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake model server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/_fake/stats", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"fake model server did not start:\n{self.log_path.read_text()}")

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_fake/config", json=changes, timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_fake/stats", timeout=5).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


FakeBackendFactory = Callable[..., FakeBackend]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """The upstream client's tests run on asyncio's own loop and on uvloop (what granian runs); the
    others on asyncio's alone, as without this hook."""
    if item.path.name != "test_upstream.py":
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def fake_backend_factory(tmp_path: Path) -> Iterator[FakeBackendFactory]:
    """`fake_backend_factory(models="a,b", token_delay=0.1)` starts a fake model server process."""
    started: list[FakeBackend] = []

    def build(models: str = "fake-model", **config: Any) -> FakeBackend:
        env = {**os.environ, "FAKE_MODELS": models}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for key, value in config.items():
            env[f"FAKE_{key.upper()}"] = str(value)
        backend = FakeBackend(free_port(), tmp_path / f"fake-{len(started)}.log", env)
        started.append(backend)
        return backend.start()

    yield build
    for backend in started:
        backend.stop()


@pytest.fixture
def fake_backend(fake_backend_factory: FakeBackendFactory) -> FakeBackend:
    return fake_backend_factory()


@pytest.fixture
def inference_headers() -> dict[str, str]:
    """Headers every inference request carries: envs/test.env's bootstrap admin token (tests of keys
    minted with the `inference` scope mint their own)."""
    return {"Authorization": "Bearer test-admin-token"}


def backends_env(*backends: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"PYLON_BACKENDS": json.dumps(list(backends)), **extra}


def openai_backend(name: str, fake: FakeBackend, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "openai", "base_url": fake.url, **fields}


def ollama_backend(name: str, fake: FakeBackend, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "ollama", "base_url": fake.url, **fields}


class Pylon:
    """Pylon in-process (its lifespan running), called over httpx's ASGI transport.

    `usages` collects the usage the inference feature reported for each request, read the way the edge
    reads it: from the request context once the response has been sent.
    """

    def __init__(self, app: Litestar, headers: dict[str, str]) -> None:
        self.app = app
        self.usages: list[Any] = []
        self.headers = headers

    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        from app.http.context import context_of

        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.usages.append(context_of(scope).usage)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.asgi),
            base_url="http://pylon",
            headers=self.headers,
            timeout=30,
        )


PylonFactory = Callable[..., Any]


@pytest.fixture
async def pylon_factory(
    settings_factory: SettingsFactory, inference_headers: dict[str, str]
) -> AsyncIterator[Callable[..., Any]]:
    """`async with pylon_factory(PYLON_BACKENDS=...) as pylon:` runs the app with its lifespan."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def build(**env: str) -> AsyncIterator[Pylon]:
        settings: Settings = settings_factory(**env)
        # Alembic runs its own event loop: keep it off this one.
        await asyncio.to_thread(migrate, settings)
        app = create_app(settings)
        async with app.litestar.lifespan():
            yield Pylon(app, inference_headers)

    yield build
