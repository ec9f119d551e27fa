"""The gateway wired into the app: a subnet backend on the simulated chain (whose axons are all refused)."""

from __future__ import annotations

import json

from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.conftest import SettingsFactory, migrate

ADMIN = {"Authorization": "Bearer test-admin-token"}
SUBNET = {"name": "sn1", "kind": "subnet", "netuid": 1, "models": ["sn1"], "fanout": 3}


async def test_subnet_backend_routes(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(PYLON_BACKENDS=json.dumps([SUBNET]))
    migrate(settings)
    async with AsyncTestClient(app=create_app(settings)) as client:
        models = await client.get("/v1/models", headers=ADMIN)
        assert [m["id"] for m in models.json()["data"]] == ["sn1"]
        # The simulated neurons' axons are unserved or documentation addresses: no miner may be called.
        chat = await client.post(
            "/v1/chat/completions",
            headers=ADMIN,
            json={"model": "sn1", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 503, chat.text
        assert chat.json()["error"]["code"] == "backends_unavailable"
        miners = await client.get("/api/v1/subnet/1/miners", headers=ADMIN)
        assert miners.status_code == 200, miners.text
        assert miners.json()["miners"] == [] and miners.json()["routable"] == []
        none = await client.post("/api/v1/subnet/1/weights/from-scores", headers=ADMIN)
        assert none.status_code == 409, none.text
        bad = await client.post("/api/v1/subnet/1/weights/from-scores", headers=ADMIN, json={"nope": 1})
        assert bad.status_code == 400, bad.text
        anonymous = await client.get("/api/v1/subnet/1/miners")
        assert anonymous.status_code == 401
