"""The /v1 hot routes (`HOT_ROUTES` in app/inference/controller.py) answer exactly as the routed ones do.

A freshly minted key is not in the worker's key cache, so its first request takes the routed handler and
the next ones the hot route; which one answered is read off the ASGI scope (Litestar's router puts the
matched `route_handler` there, a hot route does not).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.inference.conftest import Pylon, backends_env, openai_backend
from tests.inference.test_gateway import CHAT, assert_openai_error, sse_events


def recording_client(pylon: Pylon, routed: list[bool], key: str) -> httpx.AsyncClient:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await pylon.asgi(scope, receive, send)
        if scope["type"] == "http":
            routed.append("route_handler" in scope)

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://pylon",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


async def mint(pylon: Pylon, scopes: list[str], **fields: Any) -> str:
    async with pylon.client() as admin:
        response = await admin.post("/api/v1/keys", json={"name": "t", "scopes": scopes, **fields})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def stable(body: dict[str, Any]) -> dict[str, Any]:
    # The fake backend stamps each answer with a fresh id and time.
    return {name: value for name, value in body.items() if name not in ("id", "created")}


def comparable(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in ("x-request-id", "date")}


async def test_answers_are_the_same_on_both_paths(fake_backend, pylon_factory) -> None:
    async with pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon:
        key = await mint(pylon, ["inference"])
        routed: list[bool] = []
        async with recording_client(pylon, routed, key) as client:
            cases: list[tuple[str, dict[str, Any]]] = [
                ("/v1/chat/completions", CHAT),
                ("/v1/chat/completions", {**CHAT, "stream": True}),
                ("/v1/completions", {"model": "fake-model", "prompt": "once upon"}),
                ("/v1/embeddings", {"model": "fake-model", "input": ["a", "b"]}),
                ("/v1/chat/completions", {**CHAT, "model": "gpt-9"}),
                ("/v1/chat/completions", {**CHAT, "max_tokens": 10**9}),
                ("/v1/chat/completions", {"model": "fake-model", "messages": [{"role": "robot"}]}),
            ]
            for path, body in cases:
                routed.clear()
                # A fresh key per case: its first request is routed, the second is fast.
                client.headers["Authorization"] = f"Bearer {await mint(pylon, ['inference'])}"
                full = await client.post(path, json=body)
                fast = await client.post(path, json=body)
                assert routed == [True, False], (path, body)
                assert (full.status_code, comparable(full.headers)) == (
                    fast.status_code,
                    comparable(fast.headers),
                ), (path, body)
                if body.get("stream"):
                    assert sse_events(full.text) == sse_events(fast.text)
                    assert sse_events(fast.text)[-1] == "[DONE]"
                else:
                    assert stable(full.json()) == stable(fast.json()), (path, body)


async def test_usage_is_reported_on_the_fast_path(fake_backend, pylon_factory) -> None:
    async with pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon:
        key = await mint(pylon, ["inference"])
        routed: list[bool] = []
        async with recording_client(pylon, routed, key) as client:
            await client.post("/v1/chat/completions", json=CHAT)
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert routed == [True, False] and response.status_code == 200
        usage = pylon.usages[-1]
        # The client did not ask for usage; Pylon asked the backend for it and recorded it.
        chunks = [json.loads(event) for event in sse_events(response.text)[:-1]]
        assert chunks and all(chunk["choices"] for chunk in chunks)
        assert (usage.model, usage.backend, usage.prompt_tokens, usage.completion_tokens) == (
            "fake-model",
            "a",
            3,
            8,
        )


async def test_bodies_above_the_limit_get_413_on_the_fast_path(fake_backend, pylon_factory) -> None:
    env = backends_env(openai_backend("a", fake_backend), PYLON_INFERENCE_MAX_BODY_SIZE="2048")
    async with pylon_factory(**env) as pylon:
        key = await mint(pylon, ["inference"])
        routed: list[bool] = []
        async with recording_client(pylon, routed, key) as client:
            await client.get("/v1/models")
            big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
            announced = await client.post("/v1/chat/completions", json=big)

            async def chunks() -> Any:
                # No Content-Length: the limit is enforced on the bytes received.
                for _ in range(4):
                    yield b" " * 1024

            streamed = await client.post("/v1/chat/completions", content=chunks())
        assert routed == [True, False, False]
        assert_openai_error(announced, 413, "request_too_large")
        assert_openai_error(streamed, 413, "request_too_large")
    assert fake_backend.stats()["requests"] == 0


async def test_a_key_limited_to_other_models_is_refused_on_the_fast_path(fake_backend, pylon_factory):
    async with pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon:
        key = await mint(pylon, ["inference"], models=["other-model"])
        routed: list[bool] = []
        async with recording_client(pylon, routed, key) as client:
            answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
        assert routed == [True, False]
        for answer in answers:
            assert_openai_error(answer, 403, "model_not_allowed")
