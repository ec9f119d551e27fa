"""Keys under a real `pylon serve --workers 2`: revocation, rate limits and usage across worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import PROJECT_ROOT, LiveServer

ADMIN = {"Authorization": "Bearer test-admin-token"}


def fresh_get(server: LiveServer, path: str, token: str) -> httpx.Response:
    # A new connection per request, so granian spreads them over both workers.
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def create_key(server: LiveServer, **fields: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/v1/keys", json={"name": "e2e", **fields}, headers=ADMIN, timeout=5
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def pylon_cli(server: LiveServer, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_revocation_by_another_process_reaches_every_worker(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    server = live_server_factory().start("--workers", "2")
    created = create_key(server, scopes=["metrics:read"])
    # Warm both workers' caches.
    assert {fresh_get(server, "/metrics", created["key"]).status_code for _ in range(30)} == {200}
    # The CLI is neither worker: only the change feed can tell them.
    pylon_cli(server, "keys", "revoke", created["id"])
    revoked_at = time.monotonic()
    deadline = revoked_at + 10
    while time.monotonic() < deadline:
        statuses = [fresh_get(server, "/metrics", created["key"]).status_code for _ in range(10)]
        if set(statuses) == {401}:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - revoked_at
    assert set(statuses) == {401}
    assert elapsed < 3, f"revocation took {elapsed:.1f}s to reach every worker"
    # And it stays refused everywhere.
    assert {fresh_get(server, "/metrics", created["key"]).status_code for _ in range(20)} == {401}


def test_rate_limit_holds_across_workers(live_server_factory: Callable[..., LiveServer]) -> None:
    server = live_server_factory().start("--workers", "2")
    created = create_key(server, scopes=["metrics:read"], rpm=10)
    # Keep the whole test inside one minute window.
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.1)
    first = [fresh_get(server, "/metrics", created["key"]).status_code for _ in range(10)]
    assert first == [200] * 10
    time.sleep(2.5)  # both workers sync their counts (PYLON_KEYS_SYNC_INTERVAL=1)
    later = [fresh_get(server, "/metrics", created["key"]) for _ in range(10)]
    assert [r.status_code for r in later] == [429] * 10
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in later)


def test_usage_is_written_on_clean_shutdown(live_server_factory: Callable[..., LiveServer]) -> None:
    server = live_server_factory(PYLON_KEYS_USAGE_FLUSH_INTERVAL="600").start("--workers", "2")
    created = create_key(server, scopes=["metrics:read"])
    for _ in range(12):
        assert fresh_get(server, "/metrics", created["key"]).status_code == 200
    server.stop()
    usage = json.loads(pylon_cli(server, "keys", "usage", created["id"], "--json"))
    assert usage["totals"]["requests"] == 12
