"""The OpenAPI document lists every error status an operation can answer, with its error body (issue 19)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

ADMIN = {"Authorization": "Bearer test-admin-token"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def body_ref(op: dict[str, Any], status: str) -> str:
    return str(op["responses"][status]["content"]["application/json"]["schema"]["$ref"])


async def test_every_operation_documents_its_errors(client: AsyncTestClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    ops = operations(document)
    assert len(ops) > 50
    for method, path, op in ops:
        statuses = set(op["responses"])
        assert "504" in statuses, (method, path)
        if "{" in path:
            assert {"400", "404"} <= statuses, (method, path, statuses)
        if method in ("post", "put", "patch"):
            assert {"400", "413"} <= statuses, (method, path, statuses)
    by_path = {(method, path): op for method, path, op in ops}
    keys = by_path[("post", "/api/v1/keys")]
    assert {"400", "401", "403", "413", "429", "503"} <= set(keys["responses"])
    assert body_ref(keys, "401") == "#/components/schemas/ErrorResponse"
    error = document["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"status_code", "detail"}
    # OpenAI's routes document OpenAI's error body.
    chat = by_path[("post", "/v1/chat/completions")]
    assert {"401", "403", "413", "429", "503"} <= set(chat["responses"])
    assert body_ref(chat, "503") == "#/components/schemas/ErrorBody"
    # Beyond the declared rules, a handler's own `raises`: weights with no hotkey on the subnet.
    assert "422" in by_path[("put", "/api/v1/subnet/{netuid}/weights")]["responses"]
    # Open routes are not said to need a credential.
    assert "401" not in by_path[("get", "/health")]["responses"]


async def test_documented_bodies_are_what_is_answered(client: AsyncTestClient) -> None:
    # The documented body is the one sent: a refusal on each kind of route, decoded as documented.
    refused = await client.get("/api/v1/keys")
    assert refused.status_code == 401
    assert set(refused.json()) <= {"status_code", "detail", "extra"}
    assert refused.json()["status_code"] == 401
    chat = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert chat.status_code == 401
    assert set(chat.json()["error"]) >= {"message", "type"}
