"""A real peer: llama.cpp's server (`python -m llama_cpp.server`) behind `pylon serve`, driven by the SDK.

The model is a tiny random-weight llama GGUF written by the test (tests/fakes/tiny_gguf.py): gibberish,
but deterministic at temperature 0 and with real token counts. Needs the `llama` dependency group
(llama-cpp-python is built from its sdist); CI installs it, so there a missing build fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import PROJECT_ROOT, free_port
from tests.inference.conftest import backends_env, inference_headers  # noqa: F401

pytestmark = pytest.mark.slow


def _require_llama_cpp() -> None:
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        message = f"llama-cpp-python[server] and gguf are not installed ({exc}); `uv sync --group llama`"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the llama.cpp tests")
        pytest.skip(message)


@pytest.fixture
def llama_server(tmp_path: Path):
    _require_llama_cpp()
    from tests.fakes.tiny_gguf import write_tiny_llama

    model = write_tiny_llama(tmp_path / "tiny-llama.gguf")
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "models": [
            {"model": str(model), "model_alias": "tiny-llama", "n_ctx": 512, "seed": 0, "verbose": False},
            {
                "model": str(model),
                "model_alias": "tiny-llama-embed",
                "n_ctx": 512,
                "embedding": True,
                "verbose": False,
            },
        ],
    }
    config_path = tmp_path / "llama.json"
    config_path.write_text(json.dumps(config))
    log = tmp_path / "llama.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
        cwd=PROJECT_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_openai_sdk_through_pylon_to_llama_cpp(llama_server, live_server_factory, inference_headers):  # noqa: F811
    # Models discovered from llama.cpp's /v1/models (its aliases), not configured.
    server = live_server_factory(**backends_env({"name": "llama", "base_url": f"{llama_server}/v1"})).start()
    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", default_headers=inference_headers
    )
    direct = openai.AsyncOpenAI(base_url=f"{llama_server}/v1", api_key="unused")

    models = {m.id for m in (await client.models.list()).data}
    assert models == {"tiny-llama", "tiny-llama-embed"}

    request = {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 6,
        "temperature": 0,
        "seed": 1,
    }
    through = await client.chat.completions.create(**request)
    straight = await direct.chat.completions.create(**request)
    assert through.choices[0].message.content == straight.choices[0].message.content
    assert through.usage is not None and straight.usage is not None
    assert through.usage.prompt_tokens == straight.usage.prompt_tokens > 0
    assert through.usage.completion_tokens > 0

    stream = await client.chat.completions.create(**request, stream=True)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert streamed == through.choices[0].message.content

    completion = await client.completions.create(
        model="tiny-llama", prompt="the cat", max_tokens=4, temperature=0
    )
    assert completion.usage is not None and completion.usage.prompt_tokens > 0

    embeddings = await client.embeddings.create(model="tiny-llama-embed", input=["hello", "the world"])
    assert [len(item.embedding) for item in embeddings.data] == [64, 64]
    assert embeddings.data[0].embedding != embeddings.data[1].embedding

    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="not-served", messages=request["messages"])

    ready = httpx.get(f"{server.url}/ready").json()["checks"]["backends"]
    assert ready["status"] == "ok" and ready["data"]["llama"]["healthy"] is True
