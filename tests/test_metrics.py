"""/metrics: the token guard, and HTTP metrics labelled by route template, status code and app name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, get
from litestar.exceptions import ValidationException
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.metrics_buffer import BUFFER
from tests.client import PylonTestClient

from .conftest import SettingsFactory, migrate


@get("/probe/items/{item_id:int}", sync_to_thread=False, opt={"open": "test route"})
def probe_item(item_id: FromPath[int]) -> dict[str, int]:
    return {"item_id": item_id}


@get("/probe/fail/{kind:str}", sync_to_thread=False, opt={"open": "test route"})
def probe_fail(kind: FromPath[str]) -> None:
    if kind == "bad-input":
        raise ValidationException("bad input")
    raise RuntimeError("boom")


async def build_app(settings_factory: SettingsFactory, **env: str) -> Litestar:
    settings = settings_factory(**env)
    # alembic runs its own event loop: migrate from a thread.
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    app.litestar.register(probe_item)
    app.litestar.register(probe_fail)
    return app


@pytest.fixture
async def metrics_client(settings_factory: SettingsFactory) -> AsyncIterator[AsyncTestClient]:
    app = await build_app(settings_factory, PYLON_METRICS_TOKEN="s3cret-metrics", PYLON_APP_NAME="probe-app")
    async with PylonTestClient(app=app) as client:
        yield client


def requests_total(path: str, status_code: str, app_name: str = "probe-app", method: str = "GET") -> float:
    labels = {"method": method, "path": path, "status_code": status_code, "app_name": app_name}
    BUFFER.flush()
    return REGISTRY.get_sample_value("pylon_requests_total", labels) or 0.0


async def test_metrics_are_forbidden_while_no_token_is_set(settings_factory: SettingsFactory) -> None:
    app = await build_app(settings_factory, PYLON_METRICS_TOKEN="")
    async with PylonTestClient(app=app) as client:
        response = await client.get("/metrics")
        assert response.status_code == 403
        assert "PYLON_METRICS_TOKEN" in response.json()["detail"]
        # Even a bearer token does not open it: an empty configured token matches nothing.
        assert (await client.get("/metrics", headers={"Authorization": "Bearer "})).status_code == 403


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic s3cret-metrics", "s3cret-metrics", "Bearer s3cret-metrics-and-more"],
)
async def test_metrics_refuse_a_wrong_token(
    metrics_client: AsyncTestClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await metrics_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "s3cret-metrics" not in response.text


async def test_metrics_answer_the_right_token(metrics_client: AsyncTestClient) -> None:
    response = await metrics_client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"pylon_requests", "pylon_request_duration_seconds", "pylon_requests_in_progress"} <= names
    # Process metrics come along.
    assert "process_resident_memory_bytes" in names


async def test_requests_are_labelled_by_route_template(metrics_client: AsyncTestClient) -> None:
    template = "/probe/items/{item_id}"
    before = requests_total(template, "200")
    for item_id in (1, 2, 3):
        assert (await metrics_client.get(f"/probe/items/{item_id}")).status_code == 200
    assert requests_total(template, "200") == before + 3
    # The raw paths never become label values.
    exposition = (
        await metrics_client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    ).text
    assert 'path="/probe/items/1"' not in exposition
    assert f'path="{template}",status_code="200"' in exposition
    duration = REGISTRY.get_sample_value(
        "pylon_request_duration_seconds_count",
        {"method": "GET", "path": template, "status_code": "200", "app_name": "probe-app"},
    )
    assert duration is not None and duration >= 3


async def test_status_codes_are_labels(metrics_client: AsyncTestClient) -> None:
    before_400 = requests_total("/probe/fail/{kind}", "400")
    before_500 = requests_total("/probe/fail/{kind}", "500")
    before_401 = requests_total("/metrics", "401")
    assert (await metrics_client.get("/probe/fail/bad-input")).status_code == 400
    crashed = await metrics_client.get("/probe/fail/crash")
    assert crashed.status_code == 500
    assert crashed.json() == {"status_code": 500, "detail": "Internal Server Error"}
    assert (await metrics_client.get("/metrics")).status_code == 401
    assert requests_total("/probe/fail/{kind}", "400") == before_400 + 1
    assert requests_total("/probe/fail/{kind}", "500") == before_500 + 1
    assert requests_total("/metrics", "401") == before_401 + 1


async def test_unmatched_paths_are_counted_under_one_label(metrics_client: AsyncTestClient) -> None:
    """404s and 405s happen before Litestar's middlewares run; they are still counted, with a fixed label."""
    before_404 = requests_total("<unmatched>", "404")
    for path in ("/nope", "/nope/1", "/probe/elsewhere/2"):
        assert (await metrics_client.get(path)).status_code == 404
    assert requests_total("<unmatched>", "404") == before_404 + 3
    before_405 = requests_total("<unmatched>", "405", method="POST")
    assert (await metrics_client.post("/health")).status_code == 405
    assert requests_total("<unmatched>", "405", method="POST") == before_405 + 1


async def test_in_progress_gauge_returns_to_zero(metrics_client: AsyncTestClient) -> None:
    assert (await metrics_client.get("/probe/items/7")).status_code == 200
    labels = {"method": "GET", "path": "/probe/items/{item_id}", "app_name": "probe-app"}
    BUFFER.flush()
    assert REGISTRY.get_sample_value("pylon_requests_in_progress", labels) == 0.0
