"""The /v1 routes in-process against fake model servers running as real processes on loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.inference.conftest import (
    backends_env,
    ollama_backend,
    openai_backend,
)

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there world"}]}


def sse_events(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.split("\n") if line.startswith("data: ")]


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def test_chat_passes_the_backend_answer_through_and_reports_usage(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        response = await client.post("/v1/chat/completions", json={**CHAT, "top_k": 3})
        direct = httpx.post(f"{fake_backend.url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    body = response.json()
    # Bytes are passed through: same deterministic answer as calling the backend directly.
    assert body["choices"] == direct.json()["choices"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    usage = pylon.usages[-1]
    assert (usage.model, usage.backend, usage.prompt_tokens, usage.completion_tokens) == (
        "fake-model",
        "a",
        3,
        8,
    )


async def test_stream_adds_done_and_hides_the_usage_chunk_unless_asked(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        plain = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        usage_without = pylon.usages[-1]
        with_usage = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert plain.headers["content-type"].startswith("text/event-stream")
    events = sse_events(plain.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks), "the usage chunk Pylon asked for leaked to the client"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).count(" ") == 7
    # Pylon asked the backend for usage anyway, so the tokens were recorded.
    assert (usage_without.prompt_tokens, usage_without.completion_tokens) == (3, 8)
    last = json.loads(sse_events(with_usage.text)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 8


async def test_completions_and_embeddings(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        completion = await client.post(
            "/v1/completions", json={"model": "fake-model", "prompt": "once", "max_tokens": 3}
        )
        embedding = await client.post("/v1/embeddings", json={"model": "fake-model", "input": ["a b", "c"]})
        streamed = await client.post(
            "/v1/completions", json={"model": "fake-model", "prompt": "x", "stream": True}
        )
    assert completion.json()["choices"][0]["finish_reason"] == "length"
    assert completion.json()["usage"]["completion_tokens"] == 3
    data = embedding.json()["data"]
    assert [d["index"] for d in data] == [0, 1] and len(data[0]["embedding"]) == 8
    assert pylon.usages[1].prompt_tokens == 3
    assert sse_events(streamed.text)[-1] == "[DONE]"


async def test_models_list_and_get(fake_backend_factory, pylon_factory):
    a = fake_backend_factory(models="m1,org/m2")
    env = backends_env(openai_backend("a", a), openai_backend("b", a, models=["pinned"]))
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        listing = await client.get("/v1/models")
        one = await client.get("/v1/models/org/m2")
        missing = await client.get("/v1/models/nope")
    # Discovered from backend a, configured on b.
    assert [m["id"] for m in listing.json()["data"]] == ["m1", "org/m2", "pinned"]
    assert one.json()["id"] == "org/m2"
    assert_openai_error(missing, 404, "model_not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[]", None),
        (json.dumps({"model": "fake-model"}).encode(), None),
        (
            json.dumps({**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
            "messages[0].role",
        ),
        (json.dumps({**CHAT, "messages": []}).encode(), "messages"),
        (json.dumps({**CHAT, "max_tokens": 10**9}).encode(), "max_tokens"),
        (json.dumps({**CHAT, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({**CHAT, "temperature": 7}).encode(), "temperature"),
        (json.dumps({**CHAT, "messages": [{"role": "user"}]}).encode(), "messages[0].content"),
        (json.dumps({**CHAT, "model": 12}).encode(), "model"),
    ],
)
async def test_bad_bodies_get_400_and_never_reach_a_backend(fake_backend, pylon_factory, body, param):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        response = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert fake_backend.stats()["requests"] == 0


async def test_body_above_the_limit_gets_413(fake_backend, pylon_factory):
    env = backends_env(openai_backend("a", fake_backend), PYLON_INFERENCE_MAX_BODY_SIZE="2048")
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
        response = await client.post("/v1/chat/completions", json=big)
    assert_openai_error(response, 413, "request_too_large")
    assert fake_backend.stats()["requests"] == 0


async def test_unknown_model_is_404_in_openai_format(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
    assert_openai_error(response, 404, "model_not_found")


async def test_backend_4xx_is_passed_through_without_failover(fake_backend_factory, pylon_factory):
    # b serves the model name only by configuration; the server itself does not know it and says 404.
    a = fake_backend_factory(models="other")
    async with pylon_factory(**backends_env(openai_backend("a", a, models=["ghost"]))) as pylon:
        async with pylon.client() as client:
            response = await client.post("/v1/chat/completions", json={**CHAT, "model": "ghost"})
        statuses = pylon.app.state.inference.router.statuses()
    assert_openai_error(response, 404)
    assert statuses[0].healthy, "a backend refusing a request is not a broken backend"


async def test_least_in_flight_spreads_concurrent_requests(fake_backend_factory, pylon_factory):
    a, b = fake_backend_factory(latency=0.2), fake_backend_factory(latency=0.2)
    env = backends_env(openai_backend("a", a), openai_backend("b", b))
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert a.stats()["requests"] == 3 and b.stats()["requests"] == 3


def break_backend(backend, mode: str) -> None:
    if mode == "stopped":
        backend.stop()  # connection refused, as when the model server is down
    else:
        backend.configure(fail=mode)


def heal_backend(backend, mode: str) -> None:
    if mode == "stopped":
        backend.start()  # same port
    else:
        backend.configure(fail=None)


@pytest.mark.parametrize("mode", ["500", "crash", "stopped"])
async def test_failover_cooldown_and_recovery(fake_backend_factory, pylon_factory, mode):
    a, b = fake_backend_factory(), fake_backend_factory()
    env = backends_env(
        openai_backend("a", a),
        openai_backend("b", b),
        PYLON_BACKEND_COOLDOWN="0.5",
        PYLON_BACKEND_HEALTH_INTERVAL="0.2",
    )
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        break_backend(a, mode)
        answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(4)]
        assert all(r.status_code == 200 for r in answers)
        ready = (await client.get("/ready")).json()["checks"]["backends"]
        assert ready["status"] == "degraded"
        assert ready["data"]["a"]["healthy"] is False and ready["data"]["b"]["healthy"] is True
        # a failed once, then was skipped during its cool-down.
        assert b.stats()["requests"] == 4
        heal_backend(a, mode)
        for _ in range(40):
            await asyncio.sleep(0.1)
            if (await client.get("/ready")).json()["checks"]["backends"]["status"] == "ok":
                break
        else:
            pytest.fail("backend a did not come back after its cool-down")
        before = a.stats()["requests"]
        await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(4)))
        assert a.stats()["requests"] > before


async def test_timeout_fails_over(fake_backend_factory, pylon_factory):
    a, b = fake_backend_factory(), fake_backend_factory()
    env = backends_env(openai_backend("a", a, read_timeout=0.5), openai_backend("b", b))
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        a.configure(fail="hang")
        responses = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]


async def test_stream_fails_over_before_the_first_chunk(fake_backend_factory, pylon_factory):
    a, b = fake_backend_factory(), fake_backend_factory()
    async with pylon_factory(**backends_env(openai_backend("a", a), openai_backend("b", b))) as pylon:
        a.configure(fail="500")
        async with pylon.client() as client:
            responses = [
                await client.post("/v1/chat/completions", json={**CHAT, "stream": True}) for _ in range(2)
            ]
    for response in responses:
        assert response.status_code == 200
        assert sse_events(response.text)[-1] == "[DONE]"


async def test_all_backends_down_is_503_with_retry_after(fake_backend, pylon_factory):
    env = backends_env(openai_backend("a", fake_backend), PYLON_BACKEND_COOLDOWN="30")
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        fake_backend.configure(fail="500")
        first = await client.post("/v1/chat/completions", json=CHAT)
        second = await client.post("/v1/chat/completions", json=CHAT)
        ready = await client.get("/ready")
    for response in (first, second):
        assert_openai_error(response, 503, "backends_unavailable")
        assert 1 <= int(response.headers["retry-after"]) <= 30
    # The second request was refused without touching the cooled-down backend.
    assert fake_backend.stats()["requests"] == 1
    # Pylon stays ready (neurons and weights still work); the backends check says degraded.
    assert ready.status_code == 200
    backends = ready.json()["checks"]["backends"]
    assert backends["status"] == "degraded" and backends["detail"] == "0/1 backends healthy"


async def test_principal_model_allowlist_is_enforced(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(openai_backend("a", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        minted = await client.post(
            "/api/v1/keys", json={"name": "narrow", "scopes": ["inference"], "models": ["other"]}
        )
        assert minted.status_code == 201, minted.text
        narrow = {"Authorization": f"Bearer {minted.json()['key']}"}
        refused = await client.post("/v1/chat/completions", json=CHAT, headers=narrow)
        listing = await client.get("/v1/models", headers=narrow)
    assert_openai_error(refused, 403, "model_not_allowed")
    assert listing.json()["data"] == []
    assert fake_backend.stats()["requests"] == 0


async def test_ollama_backend_translates_both_ways(fake_backend, pylon_factory):
    async with (
        pylon_factory(**backends_env(ollama_backend("o", fake_backend))) as pylon,
        pylon.client() as client,
    ):
        chat = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4})
        stream = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
        stream_usage = pylon.usages[-1]
        text = await client.post(
            "/v1/completions", json={"model": "fake-model", "prompt": "a b", "stream": True}
        )
        embedding = await client.post(
            "/v1/embeddings", json={"model": "fake-model", "input": "a b c", "encoding_format": "base64"}
        )
        models = await client.get("/v1/models")
    direct = httpx.post(
        f"{fake_backend.url}/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 4}}
    )
    body = chat.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": direct.json()["message"]["content"],
    }
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    events = sse_events(stream.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert (stream_usage.backend, stream_usage.completion_tokens) == ("o", 8)
    assert sse_events(text.text)[-1] == "[DONE]"
    assert isinstance(embedding.json()["data"][0]["embedding"], str)
    assert [m["id"] for m in models.json()["data"]] == ["fake-model"]


async def test_inference_metrics_count_requests_and_tokens(fake_backend, pylon_factory):
    labels = {"model": "fake-model", "backend": "metrics-a", "type": "completion"}
    before = REGISTRY.get_sample_value("pylon_inference_tokens_total", labels) or 0
    env = backends_env(openai_backend("metrics-a", fake_backend))
    async with pylon_factory(**env) as pylon, pylon.client() as client:
        await client.post("/v1/chat/completions", json=CHAT)
        await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert REGISTRY.get_sample_value("pylon_inference_tokens_total", labels) == before + 16
    ok = {"model": "fake-model", "backend": "metrics-a", "endpoint": "chat", "outcome": "ok"}
    assert REGISTRY.get_sample_value("pylon_inference_requests_total", ok) >= 2
    ttft = {"model": "fake-model", "backend": "metrics-a", "endpoint": "chat"}
    assert REGISTRY.get_sample_value("pylon_inference_time_to_first_token_seconds_count", ttft) >= 1
