"""`pylon serve` (granian) on the simulated subnet, read with a real HTTP client over loopback."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.conftest import LiveServer


def test_served_metagraph_advances_with_the_simulated_chain(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    server = live_server_factory(PYLON_LOCAL_BLOCK_TIME="0.3").start()
    admin = {"Authorization": "Bearer test-admin-token"}
    with httpx.Client(base_url=server.url, timeout=5, headers=admin) as http:
        first = http.get("/api/v1/subnet/1/neurons/latest")
        assert first.status_code == 200, first.text
        body = first.json()
        assert len(body["neurons"]) == 256
        start = body["block"]["number"]
        deadline = time.monotonic() + 15
        number = start
        while number <= start + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
            number = http.get("/api/v1/neurons/latest").json()["block"]["number"]
        assert number > start + 1
        assert http.get("/ready").json()["checks"]["chain"]["status"] == "ok"
        metrics = http.get("/metrics", headers={"Authorization": "Bearer test-metrics-token"}).text
        assert "pylon_metagraph_cache_requests_total" in metrics
        assert "pylon_chain_head_block" in metrics
