# ruff: noqa: F811 (pytest fixtures imported from tests/inference and used as arguments)
"""The official `openai` SDK against a real `pylon serve` in front of fake model servers (all loopback)."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.inference.conftest import (  # fixtures shared with tests/inference
    backends_env,
    fake_backend,  # noqa: F401
    fake_backend_factory,  # noqa: F401
    inference_headers,  # noqa: F401
    ollama_backend,
    openai_backend,
)

MESSAGES = [{"role": "user", "content": "tell me something"}]


@pytest.fixture
def sdk(inference_headers):
    def build(url: str, **options) -> openai.AsyncOpenAI:
        # The SDK insists on an api_key; Pylon's key goes in inference_headers once keys are enforced.
        return openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", default_headers=inference_headers, **options
        )

    return build


async def test_sdk_chat_stream_completions_embeddings_models(fake_backend, live_server_factory, sdk):
    server = live_server_factory(**backends_env(openai_backend("fake", fake_backend))).start()
    client = sdk(server.url)

    chat = await client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=5)
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None and chat.usage.completion_tokens == 5

    stream = await client.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert (
        "".join(pieces)
        == (await client.chat.completions.create(model="fake-model", messages=MESSAGES))
        .choices[0]
        .message.content
    )
    assert usage is not None and usage.completion_tokens == 8

    completion = await client.completions.create(model="fake-model", prompt="once upon a time")
    assert completion.usage is not None and completion.usage.prompt_tokens == 4

    # The SDK asks for base64 by default and decodes it; the fake answers in kind.
    embeddings = await client.embeddings.create(model="fake-model", input=["one", "two words"])
    assert [len(item.embedding) for item in embeddings.data] == [8, 8]
    floats = await client.embeddings.create(model="fake-model", input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(embeddings.data[0].embedding, abs=1e-6)

    models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    assert (await client.models.retrieve("fake-model")).id == "fake-model"


async def test_sdk_errors_are_the_sdk_exception_types(fake_backend, live_server_factory, sdk):
    server = live_server_factory(
        **backends_env(openai_backend("fake", fake_backend), PYLON_BACKEND_COOLDOWN="30")
    ).start()
    client = sdk(server.url, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nope", messages=MESSAGES)
    assert "nope" in missing.value.message
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="fake-model", messages=[{"role": "wizard", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=10**9)
    fake_backend.configure(fail="500")
    with pytest.raises(openai.InternalServerError) as down:
        await client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert down.value.status_code == 503
    assert int(down.value.response.headers["retry-after"]) >= 1


async def test_sdk_against_an_ollama_backend(fake_backend, live_server_factory, sdk):
    server = live_server_factory(**backends_env(ollama_backend("ollama", fake_backend))).start()
    client = sdk(server.url)
    chat = await client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert chat.choices[0].message.content and chat.usage and chat.usage.completion_tokens == 8
    stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == chat.choices[0].message.content
    completion = await client.completions.create(model="fake-model", prompt="hello")
    assert completion.choices[0].text
    embeddings = await client.embeddings.create(model="fake-model", input=["a", "b"])
    assert len(embeddings.data) == 2 and len(embeddings.data[1].embedding) == 8


async def test_client_disconnect_cancels_the_upstream_stream(fake_backend_factory, live_server_factory, sdk):
    for kind in ("openai", "ollama"):
        fake = fake_backend_factory(tokens=200, token_delay=0.05)
        entry = openai_backend("b", fake) if kind == "openai" else ollama_backend("b", fake)
        server = live_server_factory(**backends_env(entry)).start()
        client = sdk(server.url)
        stream = await client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
        received = 0
        async for _chunk in stream:
            received += 1
            if received == 3:
                break
        await stream.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fake.stats()["streams_cancelled"] == 0:
            await asyncio.sleep(0.1)
        stats = fake.stats()
        # 200 tokens at 50 ms would take 10 s: the backend stopped because Pylon dropped the request.
        assert stats["streams_cancelled"] == 1, (kind, stats)
        assert stats["streams_completed"] == 0, (kind, stats)
        server.stop()


async def test_ready_and_metrics_show_backends(fake_backend, live_server_factory, sdk):
    server = live_server_factory(**backends_env(openai_backend("fake", fake_backend))).start()
    await sdk(server.url).chat.completions.create(model="fake-model", messages=MESSAGES)
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["checks"]["backends"]["data"]["fake"] == {
        "healthy": True,
        "models": ["fake-model"],
        "last_error": "",
    }
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer test-metrics-token"}).text
    assert (
        'pylon_inference_requests_total{backend="fake",endpoint="chat",model="fake-model",outcome="ok"} 1.0'
        in metrics
    )
    assert 'pylon_inference_tokens_total{backend="fake",model="fake-model",type="completion"} 8.0' in metrics


async def test_backend_dying_mid_stream_surfaces_as_an_sdk_error(
    fake_backend_factory, live_server_factory, sdk
):
    for kind in ("openai", "ollama"):
        fake = fake_backend_factory(fail_after=3)
        entry = openai_backend("b", fake) if kind == "openai" else ollama_backend("b", fake)
        server = live_server_factory(**backends_env(entry)).start()
        stream = await sdk(server.url, max_retries=0).chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True
        )
        received = []
        with pytest.raises(openai.APIError, match="mid-stream"):
            async for chunk in stream:
                received.append(chunk)
        # What was streamed before the failure reached the client; no failover once bytes went out.
        assert len(received) >= 2, kind
        server.stop()
