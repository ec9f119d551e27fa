"""The task routes end to end in-process: real WAV files, a real fake model server on loopback, the real
SQLite file, the worker running in the app's lifespan."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.fakes.audio import text_to_wav, tone_wav, wav_to_text
from tests.fakes.model_server import transcript_of
from tests.inference.conftest import FakeBackend
from tests.tasks.conftest import TaskPylon, running_pylon, tasks_env, wait_task

SUMMARY_TEXT = (
    "Pylon is a gateway for Bittensor subnets. It caches the metagraph, lands weights durably, "
    "proxies OpenAI-compatible inference and now queues long jobs such as transcription."
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pylon(fake: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TaskPylon]:
    env = tasks_env(fake, PYLON_TASKS_REFERENCES='{"transcription": "reference", "tts": "reference"}')
    async with running_pylon(tmp_path_factory.mktemp("data"), env) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def client(pylon: TaskPylon) -> AsyncIterator[httpx.AsyncClient]:
    async with pylon.client() as client:
        yield client


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_transcription_of_a_real_wav_completes_with_the_backends_transcript(client, pylon):
    audio = tone_wav(440.0, seconds=1.5)
    response = await client.post(
        "/api/v1/transcription",
        files={"audio_file": ("tone.wav", audio, "application/octet-stream")},
        data={"source_language": "en", "priority": "high"},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["kind"] == "transcription" and accepted["priority"] == "high"
    task = await wait_task(client, accepted["task_id"])
    assert task["status"] == "completed", task
    # The fake derives its transcript from the samples: the same audio gives the same words.
    assert task["result"]["text"] == transcript_of(audio)
    assert task["backend"] == "fake" and task["attempts"] == 1
    # Scored against the reference model (the same fake): a perfect match.
    assert task["scores"]["accuracy"] == 1.0 and 0 <= task["scores"]["speed"] <= 1
    assert task["timings"]["total_seconds"] > 0
    result = await client.get(f"/api/v1/tasks/{accepted['task_id']}/result")
    assert result.json()["text"] == transcript_of(audio)


async def test_speech_result_is_a_real_wav_that_carries_the_text(client):
    text = "Hello from the task queue."
    response = await client.post("/api/v1/tts", json={"text": text, "source_language": "en", "voice": "nova"})
    assert response.status_code == 202, response.text
    task = await wait_task(client, response.json()["task_id"])
    assert task["status"] == "completed", task
    assert task["result"]["content_type"] == "audio/wav"
    result = await client.get(task["result"]["url"])
    assert result.headers["content-type"].startswith("audio/wav")
    with wave.open(io.BytesIO(result.content), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getframerate() == 16000
        assert wav.getnframes() > 0
    assert wav_to_text(result.content) == text
    # The reference transcribed the answer's audio and compared it with the text.
    assert task["scores"]["accuracy"] == 1.0


async def test_summarization_completes_with_the_chat_answer(client):
    response = await client.post(
        "/api/v1/summarization", json={"text": SUMMARY_TEXT, "source_language": "en", "priority": "low"}
    )
    assert response.status_code == 202, response.text
    task = await wait_task(client, response.json()["task_id"])
    assert task["status"] == "completed", task
    assert task["result"]["text"] and task["result"]["content_type"].startswith("text/plain")
    # No reference configured for summaries: accuracy unknown, speed still measured.
    assert task["scores"]["accuracy"] is None and task["scores"]["speed"] is not None


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/tts", {"text": "hi", "source_language": "xx"}, "source_language"),
        ("/api/v1/tts", {"text": "", "source_language": "en"}, "text"),
        ("/api/v1/tts", {"text": "hi", "source_language": "en", "priority": "urgent"}, "priority"),
        ("/api/v1/tts", {"text": "hi", "source_language": "en", "extra": 1}, "extra"),
        ("/api/v1/summarization", {"text": "too short", "source_language": "en"}, "text"),
        ("/api/v1/summarization", {"text": SUMMARY_TEXT, "source_language": "sw"}, "source_language"),
    ],
)
async def test_bad_json_fields_are_400s_naming_the_field(client, path, body, field):
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert field in response.text


async def test_malformed_uploads_are_400_and_nothing_is_stored(client, pylon):
    before = pylon.stored_files()
    cases = [
        # Not audio: text bytes named .wav.
        ({"audio_file": ("a.wav", b"this is not audio at all", "audio/wav")}, {"source_language": "en"}),
        # No file part (a field sent as a file part's sibling only).
        ({"note": (None, b"no audio here")}, {"source_language": "en"}),
        # An unknown language, with a real WAV.
        ({"audio_file": ("a.wav", tone_wav(seconds=0.2), "audio/wav")}, {"source_language": "zz"}),
        # A bad priority.
        (
            {"audio_file": ("a.wav", tone_wav(seconds=0.2), "audio/wav")},
            {"source_language": "en", "priority": "x"},
        ),
    ]
    for files, data in cases:
        response = await client.post("/api/v1/transcription", files=files, data=data)
        assert response.status_code == 400, response.text
        assert response.json()["extra"][0]["key"] in ("audio_file", "source_language", "priority", "note")
    garbage = await client.post(
        "/api/v1/transcription",
        content=b"--xyz\r\nnot a part header\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert garbage.status_code == 400, garbage.text
    assert pylon.stored_files() == before


async def test_oversized_upload_is_413_while_streaming_and_nothing_is_stored(fake, tmp_path):
    env = tasks_env(fake, PYLON_TASKS_MAX_UPLOAD_SIZE="100000", PYLON_TASKS_WORKER="false")
    async with running_pylon(tmp_path, env) as small, small.client() as client:
        sent = 0

        async def body():
            nonlocal sent
            head = (
                b'--b\r\nContent-Disposition: form-data; name="source_language"\r\n\r\nen\r\n'
                b'--b\r\nContent-Disposition: form-data; name="audio_file"; filename="big.wav"\r\n\r\n'
            )
            yield head + tone_wav(seconds=1.0)[:44]
            for _ in range(1000):
                sent += 16384
                yield b"\0" * 16384

        response = await client.post(
            "/api/v1/transcription",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413, response.text
        assert response.json()["extra"][0]["key"] == "audio_file"
        # Refused as soon as the limit passed, not after the whole 16 MB.
        assert sent < 1_000_000
        assert small.stored_files() == []
        listed = (await client.get("/api/v1/tasks")).json()["tasks"]
        assert listed == []


async def test_cancel_pending_and_conflict_after(fake, tmp_path):
    # No worker: tasks stay pending until cancelled.
    env = tasks_env(fake, PYLON_TASKS_WORKER="false")
    async with running_pylon(tmp_path, env) as idle, idle.client() as client:
        audio = text_to_wav("cancel me")
        accepted = await client.post(
            "/api/v1/transcription",
            files={"audio_file": ("c.wav", audio, "audio/wav")},
            data={"source_language": "en"},
        )
        task_id = accepted.json()["task_id"]
        assert len(idle.stored_files()) == 1
        cancelled = await client.delete(f"/api/v1/tasks/{task_id}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert idle.stored_files() == [], "the upload is deleted with the cancel"
        again = await client.delete(f"/api/v1/tasks/{task_id}")
        assert again.status_code == 409
        assert (await client.get(f"/api/v1/tasks/{task_id}/result")).status_code == 409
        assert (await client.delete("/api/v1/tasks/999999")).status_code == 404


async def test_backend_failures_are_retried_then_failed(fake, tmp_path):
    env = tasks_env(fake, PYLON_TASKS_ROUTES='{"summarization": "missing-model"}')
    async with running_pylon(tmp_path, env) as failing, failing.client() as client:
        # A model no backend serves is refused for good (404 from the router), without retries.
        response = await client.post(
            "/api/v1/summarization", json={"text": SUMMARY_TEXT, "source_language": "en"}
        )
        task = await wait_task(client, response.json()["task_id"])
        assert task["status"] == "failed" and task["attempts"] == 1 and "404" in task["last_error"]
        # A kind without a route is not accepted at all.
        refused = await client.post("/api/v1/tts", json={"text": "hi", "source_language": "en"})
        assert refused.status_code == 503


async def test_a_failing_backend_is_retried_max_attempts_times(tmp_path, tmp_path_factory):
    import os

    from tests.conftest import free_port

    env = {**os.environ, "FAKE_MODELS": "summarizer"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    broken = FakeBackend(free_port(), tmp_path / "broken.log", env).start()
    try:
        settings = tasks_env(broken, PYLON_BACKEND_COOLDOWN="0.01", PYLON_BACKEND_HEALTH_INTERVAL="0.05")
        async with running_pylon(tmp_path / "data", settings) as pylon, pylon.client() as client:
            broken.configure(fail="500")
            response = await client.post(
                "/api/v1/summarization", json={"text": SUMMARY_TEXT, "source_language": "en"}
            )
            task = await wait_task(client, response.json()["task_id"])
            assert task["status"] == "failed", task
            assert task["attempts"] == 3 and "gave up after 3 attempts" in task["last_error"]
            stats = (await client.get("/api/v1/tasks/stats")).json()
            assert stats["counts"]["failed"] == 1
    finally:
        broken.stop()


async def test_list_stats_and_visibility(client, fake):
    listed = await client.get("/api/v1/tasks", params={"kind": "transcription", "status": "completed"})
    assert listed.status_code == 200
    assert all(task["kind"] == "transcription" for task in listed.json()["tasks"])
    assert (await client.get("/api/v1/tasks", params={"status": "nonsense"})).status_code == 400
    assert (await client.get("/api/v1/tasks", params={"limit": 0})).status_code == 400
    stats = (await client.get("/api/v1/tasks/stats")).json()
    assert set(stats["queue"]) == {"high", "normal", "low"}
    assert stats["counts"]["completed"] >= 1
    assert stats["routes"]["transcription"] == "whisper-1"


async def test_openapi_documents_the_task_routes(client):
    schema = (await client.get("/schema/openapi.json")).json()
    for path in ("/api/v1/transcription", "/api/v1/tts", "/api/v1/summarization", "/api/v1/tasks/stats"):
        assert path in schema["paths"], path
    assert "/v1/audio/transcriptions" in schema["paths"] and "/v1/audio/speech" in schema["paths"]


async def test_openai_client_transcribes_and_speaks_through_the_gateway(pylon):
    from openai import AsyncOpenAI

    async with pylon.client() as http:
        client = AsyncOpenAI(base_url="http://pylon/v1", api_key="test-admin-token", http_client=http)
        text = "Speak and hear."
        speech = await client.audio.speech.create(
            model="tts-1", input=text, voice="alloy", response_format="wav"
        )
        audio = speech.content
        with wave.open(io.BytesIO(audio), "rb") as wav:
            assert wav.getnframes() > 0
        transcript = await client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio))
        assert transcript.text == text
        # Nothing of the upload stays on disk.
        assert not list((Path(pylon.settings.data_dir) / "uploads").glob("upload-*"))
