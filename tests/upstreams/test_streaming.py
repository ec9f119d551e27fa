"""The upstream proxy end to end: a real `pylon serve` (granian) in front of the fake internal server.

Streams are checked by events, not clocks: the first chunk of an answer must reach the caller while the
upstream is still holding the rest, and the upstream must see the first piece of an upload while the
caller is still holding the rest. 50 MiB go up and down while the worker's memory is sampled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.auth.epistula import sign_request
from app.devchain.genesis import keypair_for
from app.settings import load_settings
from app.weights.identities import load_identities
from tests.conftest import LiveServer, base_env, free_port
from tests.upstreams.conftest import RunningUpstream

ADMIN = {"Authorization": "Bearer test-admin-token"}
MIB = 1024 * 1024
LARGE = 50 * MIB


@pytest.fixture(scope="module")
def server(upstream: RunningUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("serve")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYLON_")}
    inherited.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env = {
        **inherited,
        **base_env(folder / "data"),
        "PYLON_LOCAL_BLOCK_TIME": "3600",
        "PYLON_UPSTREAMS": json.dumps(
            [
                {"prefix": "/train", "url": upstream.url},
                {"prefix": "/brittle", "url": upstream.url, "timeout": 0.5, "required": False},
            ]
        ),
    }
    live = LiveServer(env, free_port(), folder / "serve.log").start(timeout=90)
    yield live
    live.stop()


def rss_of_tree(pid: int) -> int:
    """Resident bytes of `pid` and its descendants (granian's workers are child processes)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS"))
        pending.extend(int(child) for child in children)
    return total


class PeakMemory:
    """Samples the server's RSS from a thread while a transfer runs; `growth` is the peak over the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_of_tree(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_of_tree(self.pid))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


async def test_the_answer_streams_before_the_upstream_has_finished(
    server: LiveServer, upstream: RunningUpstream
) -> None:
    upstream.fake.release.clear()
    path = "/train/stream?chunks=4&size=1000&hold=1"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", path, headers=ADMIN) as answer,
    ):
        assert answer.status_code == 200
        pieces = answer.aiter_raw()
        first = await anext(pieces)
        # The upstream is still holding its second chunk: the first came through on its own.
        assert not upstream.fake.stream_finished.is_set()
        assert first.startswith(b"A")
        upstream.fake.release.set()
        rest = b"".join([piece async for piece in pieces])
    assert first + rest == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"D" * 1000
    assert upstream.fake.stream_finished.is_set()


async def test_the_upload_streams_before_the_caller_has_finished(
    server: LiveServer, upstream: RunningUpstream
) -> None:
    upstream.fake.upload_started.clear()
    seen_early: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        # The upstream must have the first piece while the rest is still to come.
        seen_early.append(await asyncio.to_thread(upstream.fake.upload_started.wait, 10))
        yield b"y" * 1000

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/train/upload", content=body(), headers=ADMIN)
    assert response.status_code == 200, response.text
    assert seen_early == [True]
    assert response.json()["size"] == 2000
    assert response.json()["sha256"] == hashlib.sha256(b"x" * 1000 + b"y" * 1000).hexdigest()


async def test_fifty_mebibytes_each_way_with_memory_bounded(
    server: LiveServer, upstream: RunningUpstream
) -> None:
    assert server.process is not None
    piece = hashlib.sha256(b"seed").digest() * (MIB // 32)
    expected = hashlib.sha256()
    for _ in range(LARGE // MIB):
        expected.update(piece)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(LARGE // MIB):
            yield piece

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        with PeakMemory(server.process.pid) as up:
            response = await client.post(
                "/train/upload", content=body(), headers={**ADMIN, "Content-Length": str(LARGE)}
            )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "size": LARGE,
            "sha256": expected.hexdigest(),
            "largest_piece": response.json()["largest_piece"],
        }

        with PeakMemory(server.process.pid) as down:
            received = 0
            async with client.stream("GET", "/train/download?mb=50", headers=ADMIN) as answer:
                assert answer.status_code == 200
                assert answer.headers["content-length"] == str(LARGE)
                async for chunk in answer.aiter_raw():
                    received += len(chunk)
        assert received == LARGE
    # Neither body was held whole: far less than 50 MiB more memory at the peak.
    assert up.growth < 20 * MIB, up.growth
    assert down.growth < 20 * MIB, down.growth


def test_a_validator_signing_with_epistula_reaches_the_upstream(server: LiveServer) -> None:
    settings = load_settings(server.env)
    own = load_identities(settings)["default"].hotkey_ss58
    neuron = keypair_for(settings.devchain.seed, 1, 3)
    body = b'{"prompt": "hi"}'
    signed = httpx.post(
        f"{server.url}/train/echo/run", content=body, headers=sign_request(neuron, body, own), timeout=30
    )
    assert signed.status_code == 200, signed.text
    echo = signed.json()
    assert ["X-Pylon-Hotkey", neuron.ss58_address] in echo["headers"]
    assert echo["sha256"] == hashlib.sha256(body).hexdigest()
    unsigned = httpx.post(f"{server.url}/train/echo/run", content=body, timeout=30)
    assert unsigned.status_code == 401 and unsigned.headers["content-type"].startswith("application/json")
    status = httpx.get(f"{server.url}/status", timeout=30)
    assert status.status_code == 200, status.text
    assert status.json()["checks"]["upstream:train"]["status"] == "ok"


async def test_an_answer_broken_midway_ends_unfinished(server: LiveServer) -> None:
    """The upstream stalls past its timeout after its first chunk: the status cannot change any more, so
    the caller sees the answer end before its last chunk, never a complete-looking one."""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/brittle/stream?chunks=3&size=10&delay=3", headers=ADMIN) as answer,
    ):
        assert answer.status_code == 200
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            async for piece in answer.aiter_raw():
                received += piece
    assert received == b"A" * 10
