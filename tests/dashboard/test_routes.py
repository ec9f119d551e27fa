"""The dashboard's shell and JSON routes, in process: who may call them and what they answer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.dashboard.controller import STATIC
from app.main import create_app
from app.settings import Settings
from tests.client import PylonTestClient
from tests.conftest import SettingsFactory, migrate
from tests.keys.helpers import ADMIN, bearer, create_key
from tests.weights.conftest import hotkeys, wait_job

DATA_ROUTES = [
    "/api/v1/dashboard/overview",
    "/api/v1/dashboard/metagraph",
    "/api/v1/dashboard/weights",
    "/api/v1/dashboard/usage",
    "/api/v1/dashboard/backends",
]


@pytest.mark.parametrize("path", DATA_ROUTES)
async def test_data_routes_need_the_dashboard_scope(client: AsyncTestClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    everything_else = await create_key(client, ["neurons:read", "weights:read", "keys:admin", "metrics:read"])
    refused = await client.get(path, headers=bearer(everything_else["key"]))
    assert refused.status_code == 403
    assert refused.json()["extra"]["missing_scope"] == "dashboard"
    dashboard = await create_key(client, ["dashboard"])
    assert (await client.get(path, headers=bearer(dashboard["key"]))).status_code == 200
    assert (await client.get(path, headers=ADMIN)).status_code == 200


async def test_the_shell_is_open_and_loads_nothing_from_elsewhere(client: AsyncTestClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text):
        answer = await client.get(asset)
        assert answer.status_code == 200, asset
    script = await client.get("/dashboard/static/app.js")
    assert "javascript" in script.headers["content-type"]
    # No CDN: no file of the dashboard names another host (SVG's namespace is a name, never fetched).
    for path in STATIC.rglob("*"):
        if path.is_file():
            text = path.read_text().replace("http://www.w3.org/2000/svg", "")
            assert not re.search(r"https?://", text), f"{path} refers to another host"


async def test_metagraph_rows_are_the_neurons_of_the_same_block(client: AsyncTestClient) -> None:
    table = (await client.get("/api/v1/dashboard/metagraph", headers=ADMIN)).json()
    assert table["netuid"] == 1
    assert [row["uid"] for row in table["neurons"]] == list(range(256))
    # Blocks come every 0.2 s in the test env: compare with the neurons at the table's own block.
    block = table["block"]["number"]
    neurons = (await client.get(f"/api/v1/subnet/1/neurons/{block}", headers=ADMIN)).json()["neurons"]
    assert len(neurons) == len(table["neurons"])
    for row in table["neurons"]:
        neuron = neurons[row["hotkey"]]
        assert row["uid"] == neuron["uid"]
        assert row["stake"] == neuron["stake"]
        assert row["trust"] == neuron["trust"]
        assert row["incentive"] == neuron["incentive"]
        assert row["validator_permit"] == neuron["validator_permit"]
        assert row["axon"] == f"{neuron['axon_info']['ip']}:{neuron['axon_info']['port']}"
    # 64 genesis validators, and Pylon's dev wallet once the simulated subnet has registered it.
    assert sum(row["validator_permit"] for row in table["neurons"]) >= 64


async def test_unknown_subnet_is_404(client: AsyncTestClient) -> None:
    assert (await client.get("/api/v1/dashboard/metagraph?netuid=77", headers=ADMIN)).status_code == 404


async def test_a_key_limited_to_other_subnets_cannot_read_this_metagraph(client: AsyncTestClient) -> None:
    key = await create_key(client, ["dashboard"], netuids=[2])
    response = await client.get("/api/v1/dashboard/metagraph?netuid=1", headers=bearer(key["key"]))
    assert response.status_code == 403


async def test_overview_names_the_caller_and_the_head(client: AsyncTestClient) -> None:
    key = await create_key(client, ["dashboard"])
    overview = (await client.get("/api/v1/dashboard/overview", headers=bearer(key["key"]))).json()
    assert overview["principal"] == f"api_key:{key['id']}"
    assert overview["netuid"] == 1
    assert overview["stale"] is False


async def test_weights_jobs_oldest_first_with_counts(weights_app_factory: Callable[..., Litestar]) -> None:
    # No rate limit: the second job lands at once instead of waiting out the first one's blocks.
    async with PylonTestClient(app=weights_app_factory(PYLON_LOCAL_WEIGHTS_RATE_LIMIT="0")) as wclient:
        wclient.headers.update(ADMIN)
        await check_weights_timeline(wclient)


async def check_weights_timeline(wclient: AsyncTestClient) -> None:
    keys = await hotkeys(wclient)
    first = (await wclient.put("/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0}})).json()
    await wait_job(wclient, first["job_id"])
    second = (await wclient.put("/api/v1/subnet/1/weights", json={"weights": {keys[1]: 1.0}})).json()
    await wait_job(wclient, second["job_id"])
    timeline = (await wclient.get("/api/v1/dashboard/weights")).json()
    assert [job["id"] for job in timeline["jobs"]] == [first["job_id"], second["job_id"]]
    listed = (await wclient.get("/api/v1/weights/jobs")).json()["jobs"]
    assert timeline["jobs"] == list(reversed(listed))
    assert timeline["counts"] == {"set": 2}


async def test_usage_sums_the_keys_reports_per_day(client: AsyncTestClient) -> None:
    reader = await create_key(client, ["dashboard"])
    for _ in range(3):
        assert (
            await client.get("/api/v1/dashboard/overview", headers=bearer(reader["key"]))
        ).status_code == 200
    assert (
        await client.get("/api/v1/dashboard/metagraph?netuid=77", headers=bearer(reader["key"]))
    ).status_code == 404
    usage = (await client.get("/api/v1/dashboard/usage?days=7", headers=ADMIN)).json()
    assert len(usage["days"]) == 7 and usage["days"][0]["day"] == usage["since"]
    by_id = {key["id"]: key for key in usage["keys"]}
    report = (await client.get(f"/api/v1/keys/{reader['id']}/usage?days=7", headers=ADMIN)).json()
    assert by_id[reader["id"]]["totals"] == report["totals"]
    assert by_id[reader["id"]]["days"] == report["days"]
    assert report["totals"]["requests"] == 4 and report["totals"]["errors"] == 1
    today = usage["days"][-1]
    assert today["requests"] == sum(key["totals"]["requests"] for key in usage["keys"])
    assert today["errors"] == 1


@pytest.fixture
def backend_settings(settings_factory: SettingsFactory) -> Settings:
    """One backend on a port nothing listens on (migrated here, off the test's event loop)."""
    backends = [{"name": "nowhere", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}]
    settings = settings_factory(PYLON_BACKENDS=json.dumps(backends))
    migrate(settings)
    return settings


async def test_backends_are_the_routers_view(backend_settings: Settings) -> None:
    async with PylonTestClient(app=create_app(backend_settings)) as client:
        answer = (await client.get("/api/v1/dashboard/backends", headers=ADMIN)).json()
        ready = (await client.get("/ready")).json()
    [backend] = answer["backends"]
    assert backend["name"] == "nowhere" and backend["models"] == ["m"]
    assert backend["healthy"] is ready["checks"]["backends"]["data"]["nowhere"]["healthy"]


async def test_data_routes_are_in_the_openapi_schema(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for path in DATA_ROUTES:
        operation = schema["paths"][path]["get"]
        assert operation["tags"] == ["dashboard"]
        assert "200" in operation["responses"]
    assert "/dashboard" not in schema["paths"]
