"""Fixtures of the upstream proxy's tests: one fake internal server per module, served from a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.fakes.upstream_server import FakeUpstream


class RunningUpstream:
    def __init__(self, fake: FakeUpstream, port: int) -> None:
        self.fake = fake
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningUpstream]:
    """The fake internal server (tests/fakes/upstream_server.py) on a free loopback port."""
    fake = FakeUpstream()
    port = free_port()
    thread = fake.serve_in_thread(port)
    yield RunningUpstream(fake, port)
    fake.stop_thread(thread)


def dead_port() -> int:
    """A loopback port nothing listens on (bound and released: nobody else took it in between)."""
    return free_port()
