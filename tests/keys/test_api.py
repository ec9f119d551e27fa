"""The admin API and the guard's answers for keys: create, list, show, change, revoke, expiry, metrics."""

import asyncio
import datetime as dt

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.keys.helpers import ADMIN, bearer, create_key


async def test_create_shows_the_secret_once(client: AsyncTestClient) -> None:
    created = await create_key(client, ["neurons:read"], rpm=5, netuids=[3, 1, 3], models=["m"])
    assert created["key"].startswith(f"pylon_{created['id']}_")
    assert created["status"] == "active"
    assert created["netuids"] == [1, 3] and created["models"] == ["m"] and created["rpm"] == 5
    listed = (await client.get("/api/v1/keys", headers=ADMIN)).json()
    assert [k["id"] for k in listed] == [created["id"]]
    shown = (await client.get(f"/api/v1/keys/{created['id']}", headers=ADMIN)).json()
    for body in (*listed, shown):
        assert "key" not in body and created["key"] not in str(body)
        assert "secret_hash" not in body


async def test_create_validates_its_body(client: AsyncTestClient) -> None:
    for body in (
        {"name": "x", "scopes": ["nope"]},
        {"name": "x", "scopes": []},
        {"name": "", "scopes": ["inference"]},
        {"name": "x", "scopes": ["inference"], "rpm": 0},
        {"name": "x", "scopes": ["inference"], "unknown": 1},
        {"name": "x", "scopes": ["inference"], "expires_in": "soon"},
        {"name": "x", "scopes": ["inference"], "expires_in": "1d", "expires_at": "2030-01-01T00:00:00Z"},
    ):
        response = await client.post("/api/v1/keys", json=body, headers=ADMIN)
        assert response.status_code == 400, (body, response.text)


async def test_key_authenticates_and_scope_is_enforced(client: AsyncTestClient) -> None:
    metrics_key = (await create_key(client, ["metrics:read"]))["key"]
    assert (await client.get("/metrics", headers=bearer(metrics_key))).status_code == 200
    assert (await client.get("/metrics", headers={"X-API-Key": metrics_key})).status_code == 200
    denied = await client.get("/api/v1/keys", headers=bearer(metrics_key))
    assert denied.status_code == 403
    assert denied.json()["detail"] == "missing scope 'keys:admin'"
    assert denied.json()["extra"]["missing_scope"] == "keys:admin"


async def test_missing_and_bad_credentials_get_401(client: AsyncTestClient) -> None:
    created = await create_key(client, ["keys:admin"])
    wrong_secret = created["key"][:-4] + ("aaaa" if not created["key"].endswith("aaaa") else "bbbb")
    for headers in (
        {},
        bearer("pylon_zzzzzzzzzzzz_" + "x" * 43),
        bearer(wrong_secret),
        bearer("not-a-key"),
        {"Authorization": "Basic abc"},
        bearer("test-metrics-token"),
    ):
        response = await client.get("/api/v1/keys", headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_metrics_accepts_its_token_or_a_metrics_key(client: AsyncTestClient) -> None:
    assert (await client.get("/metrics", headers=bearer("test-metrics-token"))).status_code == 200
    assert (await client.get("/metrics")).status_code == 401
    other = (await create_key(client, ["inference"]))["key"]
    assert (await client.get("/metrics", headers=bearer(other))).status_code == 403
    assert "pylon_requests_total" in (await client.get("/metrics", headers=ADMIN)).text


async def test_revoke_takes_effect_at_once(client: AsyncTestClient) -> None:
    created = await create_key(client, ["metrics:read"])
    assert (await client.get("/metrics", headers=bearer(created["key"]))).status_code == 200
    revoked = await client.delete(f"/api/v1/keys/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = await client.get("/metrics", headers=bearer(created["key"]))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # Revoking twice is harmless; revoked keys stay listed with their status.
    assert (await client.delete(f"/api/v1/keys/{created['id']}", headers=ADMIN)).status_code == 200
    active = (await client.get("/api/v1/keys?include_revoked=false", headers=ADMIN)).json()
    assert created["id"] not in [k["id"] for k in active]


async def test_expired_key_is_refused(client: AsyncTestClient) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)).isoformat()
    created = await create_key(client, ["metrics:read"], expires_at=soon)
    assert (await client.get("/metrics", headers=bearer(created["key"]))).status_code == 200
    await asyncio.sleep(1.7)
    refused = await client.get("/metrics", headers=bearer(created["key"]))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    shown = (await client.get(f"/api/v1/keys/{created['id']}", headers=ADMIN)).json()
    assert shown["status"] == "expired"


async def test_patch_changes_limits_name_and_expiry(client: AsyncTestClient) -> None:
    created = await create_key(client, ["metrics:read"], rpm=1)
    key = bearer(created["key"])
    assert (await client.get("/metrics", headers=key)).status_code == 200
    assert (await client.get("/metrics", headers=key)).status_code == 429
    patched = await client.patch(
        f"/api/v1/keys/{created['id']}", json={"rpm": None, "name": "n2"}, headers=ADMIN
    )
    assert patched.status_code == 200
    assert patched.json()["rpm"] is None and patched.json()["name"] == "n2"
    assert (await client.get("/metrics", headers=key)).status_code == 200
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    expired = await client.patch(f"/api/v1/keys/{created['id']}", json={"expires_at": past}, headers=ADMIN)
    assert expired.json()["status"] == "expired"
    assert (await client.get("/metrics", headers=key)).status_code == 401
    revived = await client.patch(f"/api/v1/keys/{created['id']}", json={"expires_in": "1h"}, headers=ADMIN)
    assert revived.json()["status"] == "active"
    assert (await client.get("/metrics", headers=key)).status_code == 200
    bad = await client.patch(f"/api/v1/keys/{created['id']}", json={"scopes": ["keys:admin"]}, headers=ADMIN)
    assert bad.status_code == 400


async def test_unknown_ids_are_404(client: AsyncTestClient) -> None:
    for method, path in (
        ("GET", "/api/v1/keys/nope"),
        ("DELETE", "/api/v1/keys/nope"),
        ("GET", "/api/v1/keys/nope/usage"),
    ):
        response = await client.request(method, path, headers=ADMIN)
        assert response.status_code == 404, (method, path, response.text)
    response = await client.patch("/api/v1/keys/nope", json={"name": "x"}, headers=ADMIN)
    assert response.status_code == 404


async def test_key_is_verified_from_memory_after_the_first_lookup(
    app: Litestar, client: AsyncTestClient
) -> None:
    created = await create_key(client, ["metrics:read"])
    runtime = app.state.keys_runtime
    loads = 0
    original = runtime.cache._loader

    async def counting(key_id: str):  # type: ignore[no-untyped-def]
        nonlocal loads
        loads += 1
        return await original(key_id)

    runtime.cache._loader = counting
    for _ in range(20):
        assert (await client.get("/metrics", headers=bearer(created["key"]))).status_code == 200
    assert loads <= 1
