"""The latest metagraph's hot routes (`HOT_ROUTES` in app/neurons/controller.py) answer exactly as the
routed handlers do.

Which path answered is read off the ASGI scope: Litestar's router puts the matched `route_handler` there,
a hot route does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from app.main import create_app
from app.metrics_buffer import BUFFER
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import SettingsFactory, migrate
from tests.keys.helpers import ADMIN, bearer, create_key

LATEST = "/api/v1/subnet/1/neurons/latest"


class Recorder:
    """The app, remembering for each request whether Litestar's router handled it."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.routed: list[bool] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routed.append("route_handler" in scope)


@asynccontextmanager
async def recording(settings: Settings) -> AsyncIterator[tuple[AsyncTestClient, Recorder]]:
    """A test client on a migrated app whose requests go through a Recorder."""
    migrate(settings)
    app = create_app(settings)
    recorder = Recorder(app)
    async with PylonTestClient(app=app) as client:
        # The test client calls the app it was given; route requests through the recorder instead.
        client.app = recorder  # type: ignore[assignment]
        yield client, recorder


@pytest.fixture
async def recorded(settings_factory: SettingsFactory) -> AsyncIterator[tuple[AsyncTestClient, Recorder]]:
    async with recording(
        settings_factory(PYLON_LOCAL_BLOCK_TIME="3600", PYLON_LOCAL_NEURONS="16")
    ) as recorded:
        yield recorded


def comparable(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in ("x-request-id", "date")}


async def test_a_cached_key_is_served_by_the_fast_path_with_the_routes_answer(recorded) -> None:
    client, recorder = recorded
    key = (await create_key(client, ["neurons:read"]))["key"]
    recorder.routed.clear()
    # The first request loads the key through the full route; the second finds it cached.
    full = await client.get(LATEST, headers=bearer(key))
    fast = await client.get(LATEST, headers=bearer(key))
    assert recorder.routed == [True, False]
    assert full.status_code == fast.status_code == 200
    assert full.content == fast.content and fast.json()["neurons"]
    assert comparable(full.headers) == comparable(fast.headers)
    assert full.headers["x-request-id"] != fast.headers["x-request-id"]
    # A caller's own request id comes back, as on the full route.
    traced = await client.get(LATEST, headers={**bearer(key), "X-Request-ID": "trace-42"})
    assert traced.headers["x-request-id"] == "trace-42" and recorder.routed[-1] is False
    etag = fast.headers["etag"]
    not_modified = await client.get(LATEST, headers={**bearer(key), "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert recorder.routed[-1] is False
    # The default-netuid short form goes the same way.
    assert (await client.get("/api/v1/neurons/latest", headers=bearer(key))).content == fast.content
    assert recorder.routed[-1] is False


async def test_refusals_and_errors_are_left_to_the_full_route(recorded) -> None:
    client, recorder = recorded
    reader = (await create_key(client, ["neurons:read"]))["key"]
    writer = (await create_key(client, ["weights:write"]))["key"]
    for key in (reader, writer):
        await client.get(LATEST, headers=bearer(key))
    recorder.routed.clear()

    missing = await client.get(LATEST)
    assert missing.status_code == 401 and "authentication required" in missing.json()["detail"]
    wrong_scope = await client.get(LATEST, headers=bearer(writer))
    assert wrong_scope.status_code == 403 and wrong_scope.json()["extra"]["missing_scope"] == "neurons:read"
    bad_secret = await client.get(LATEST, headers=bearer(reader[:-4] + "AAAA"))
    assert bad_secret.status_code == 401
    unknown_netuid = await client.get("/api/v1/subnet/77/neurons/latest", headers=bearer(reader))
    assert unknown_netuid.status_code == 404
    assert recorder.routed == [True] * 4
    # A non-numeric netuid reaches no handler (none to record): a 400 naming it (issue 19), not a 404.
    not_digits = await client.get("/api/v1/subnet/x1/neurons/latest", headers=bearer(reader))
    assert not_digits.status_code == 400 and "netuid" in not_digits.text

    key_id = reader.split("_")[1]
    assert (await client.delete(f"/api/v1/keys/{key_id}", headers=ADMIN)).status_code in (200, 204)
    revoked = await client.get(LATEST, headers=bearer(reader))
    assert revoked.status_code == 401 and recorder.routed[-1] is True


async def test_a_spent_budget_is_answered_429_and_counted_once(recorded) -> None:
    client, recorder = recorded
    key = (await create_key(client, ["neurons:read"], rpm=2))["key"]
    answers = [(await client.get(LATEST, headers=bearer(key))).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    # The first loaded the key (full route), the second was fast, the 429 came from the full route.
    assert recorder.routed[-3:] == [True, False, True]
    limiter = client.app.app.state.keys_runtime.limiter  # type: ignore[attr-defined]
    assert limiter.usage(key.split("_")[1])[0] == 2


async def test_metrics_and_usage_name_the_route_as_the_router_does(recorded) -> None:
    client, recorder = recorded
    key = (await create_key(client, ["neurons:read", "metrics:read"]))["key"]
    labels = {
        "method": "GET",
        "path": "/api/v1/subnet/{netuid}/neurons/latest",
        "status_code": "200",
        "app_name": "pylon",
    }
    BUFFER.flush()
    before = REGISTRY.get_sample_value("pylon_requests_total", labels) or 0.0
    for _ in range(2):
        assert (await client.get(LATEST, headers=bearer(key))).status_code == 200
    assert recorder.routed[-2:] == [True, False]
    # Both requests under the router's template: the fast path labels them as the router does.
    BUFFER.flush()
    assert REGISTRY.get_sample_value("pylon_requests_total", labels) == before + 2
    assert LATEST not in (await client.get("/metrics", headers=bearer(key))).text
    runtime = client.app.app.state.keys_runtime  # type: ignore[attr-defined]
    await runtime.usage.flush()
    report = (await client.get(f"/api/v1/keys/{key.split('_')[1]}/usage", headers=ADMIN)).json()
    assert report["totals"]["requests"] >= 2
