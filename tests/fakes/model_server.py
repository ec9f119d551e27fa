"""A small, honest fake model server: OpenAI's wire format and Ollama's native API, on granian.

    uv run python -m tests.fakes.model_server --port 9000 --models fake-model

Answers are deterministic (words picked by hashing the prompt), token counts are real counts of what it
sends (one word = one token; a prompt costs one token per whitespace-separated word), streams send one
token per event. Failure modes and latency can be changed while it runs, so tests can break a backend
and heal it: `POST /_fake/config` with any of `{"fail": "500"|"crash"|"hang"|null, "fail_after": n,
"latency": s, "token_delay": s, "salt": str}`;
`GET /_fake/stats` counts generation requests (POSTs), streams finished and streams the client abandoned.
Audio (`/v1/audio/transcriptions`, `/v1/audio/speech`): speech is a real WAV carrying its text as tones
(tests/fakes/audio.py), and a transcript is that text again, or words hashed from any other audio.

It is a bare ASGI app (no framework) so benchmarks measure Pylon, not the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextvars
import hashlib
import io
import os
import struct
import time
from pathlib import Path
from typing import Any

import msgspec

from tests.fakes.audio import text_to_wav, wav_frames, wav_to_text

WORDS = (
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo",
    "juniper", "kelp", "lumen", "meadow", "nectar", "onyx", "pylon", "quartz", "river",
    "saffron", "tundra", "umber", "violet", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip
_encode = msgspec.json.encode
_decode = msgspec.json.decode

# Read once per process from the environment (granian workers import this module themselves).
CONFIG: dict[str, Any] = {
    "models": [m for m in os.environ.get("FAKE_MODELS", "fake-model").split(",") if m],
    "tokens": int(os.environ.get("FAKE_TOKENS", "8")),
    "latency": float(os.environ.get("FAKE_LATENCY", "0")),
    "token_delay": float(os.environ.get("FAKE_TOKEN_DELAY", "0")),
    "dimensions": int(os.environ.get("FAKE_DIMENSIONS", "8")),
    "fail": os.environ.get("FAKE_FAIL") or None,
    # Streams break (connection dropped) after this many events; 0 never.
    "fail_after": int(os.environ.get("FAKE_FAIL_AFTER", "0")),
    # Mixed into every answer's hash: a non-empty salt answers differently from an unsalted server (a
    # "wrong" model, for the subnet gateway's scoring).
    "salt": os.environ.get("FAKE_SALT", ""),
}
# The request's headers, for the handlers that need them (multipart boundaries).
CURRENT_HEADERS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("headers")
STATS = {
    "requests": 0,
    "streams_completed": 0,
    "streams_cancelled": 0,
    "in_flight": 0,
    "transcriptions": 0,
    "speeches": 0,
}


def tokens_for(text: str, count: int) -> list[str]:
    digest = hashlib.sha256((CONFIG["salt"] + text).encode()).digest()
    return [(" " if i else "") + WORDS[digest[i % len(digest)] % len(WORDS)] for i in range(count)]


def count_tokens(text: str) -> int:
    return len(text.split())


def embedding(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256((CONFIG["salt"] + text).encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def message_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(str(content))
    return "\n".join(parts)


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def send_json(send: Any, status: int, payload: Any, content_type: bytes = b"application/json") -> None:
    body = _encode(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def openai_error(message: str, code: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}


class Disconnected(Exception):
    pass


class StreamWriter:
    """Sends a streamed body and notices when the client goes away."""

    def __init__(self, receive: Any, send: Any) -> None:
        self.send = send
        self.gone = asyncio.Event()
        self.watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                return

    async def start(self, content_type: bytes) -> None:
        await self.send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
        )

    async def write(self, data: bytes) -> None:
        if self.gone.is_set():
            raise Disconnected
        try:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception as exc:
            raise Disconnected from exc

    async def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self.gone.wait(), seconds)
        except TimeoutError:
            return
        raise Disconnected

    async def finish(self) -> None:
        self.watcher.cancel()
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def stream_events(receive: Any, send: Any, frames: list[bytes], content_type: bytes) -> None:
    writer = StreamWriter(receive, send)
    try:
        await writer.start(content_type)
        for index, frame in enumerate(frames):
            if index:
                await writer.pause(CONFIG["token_delay"])
            if CONFIG["fail_after"] and index >= CONFIG["fail_after"]:
                # Dies mid-body: the server can only drop the connection, as a crashing backend does.
                raise RuntimeError("fake backend died mid-stream")
            await writer.write(frame)
        await writer.finish()
        STATS["streams_completed"] += 1
    except Disconnected:
        STATS["streams_cancelled"] += 1
    finally:
        writer.watcher.cancel()


# --- OpenAI wire format ---


def sse(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def n_tokens(body: dict[str, Any]) -> tuple[int, str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    count = CONFIG["tokens"]
    if isinstance(limit, int) and limit < count:
        return limit, "length"
    return count, "stop"


async def openai_chat(body: dict[str, Any], receive: Any, send: Any, text_completion: bool) -> None:
    model = body["model"]
    prompt = str(body.get("prompt", "")) if text_completion else message_text(body.get("messages", []))
    count, finish = n_tokens(body)
    tokens = tokens_for(prompt, count)
    prompt_tokens = count_tokens(prompt)
    created = int(time.time())
    ident = ("cmpl-" if text_completion else "chatcmpl-") + hashlib.sha256(prompt.encode()).hexdigest()[:16]
    obj = "text_completion" if text_completion else "chat.completion"
    if not body.get("stream"):
        if text_completion:
            choice: dict[str, Any] = {
                "index": 0,
                "text": "".join(tokens),
                "finish_reason": finish,
                "logprobs": None,
            }
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(tokens)},
                "finish_reason": finish,
            }
        payload = {
            "id": ident,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage(prompt_tokens, count),
        }
        await send_json(send, 200, payload)
        return
    chunk_obj = "text_completion" if text_completion else "chat.completion.chunk"
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    frames = []
    for index, token in enumerate(tokens):
        if text_completion:
            choice = {"index": 0, "text": token, "finish_reason": None}
        else:
            delta = {"role": "assistant", "content": token} if index == 0 else {"content": token}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
        frame = {"id": ident, "object": chunk_obj, "created": created, "model": model, "choices": [choice]}
        if include_usage:
            frame["usage"] = None
        frames.append(sse(frame))
    last: dict[str, Any] = {"index": 0, "finish_reason": finish}
    last.update({"text": ""} if text_completion else {"delta": {}})
    frames.append(
        sse({"id": ident, "object": chunk_obj, "created": created, "model": model, "choices": [last]})
    )
    if include_usage:
        frames.append(
            sse(
                {
                    "id": ident,
                    "object": chunk_obj,
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage(prompt_tokens, count),
                }
            )
        )
    frames.append(b"data: [DONE]\n\n")
    await stream_events(receive, send, frames, b"text/event-stream")


def inputs_of(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(item) for item in value]


def encode_vector(vector: list[float], encoding_format: str | None) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


async def openai_embeddings(body: dict[str, Any], send: Any) -> None:
    inputs = inputs_of(body["input"])
    dims = int(body.get("dimensions") or CONFIG["dimensions"])
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": encode_vector(embedding(text, dims), body.get("encoding_format")),
        }
        for i, text in enumerate(inputs)
    ]
    prompt_tokens = sum(count_tokens(text) for text in inputs)
    await send_json(
        send, 200, {"object": "list", "data": data, "model": body["model"], "usage": usage(prompt_tokens, 0)}
    )


# --- Ollama native API ---


def ollama_final(model: str, prompt_tokens: int, count: int, finish: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "done": True,
        "done_reason": finish,
        "total_duration": 1000,
        "load_duration": 10,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 100,
        "eval_count": count,
        "eval_duration": 500,
    }


async def ollama_generate(body: dict[str, Any], receive: Any, send: Any, chat: bool) -> None:
    model = body["model"]
    prompt = message_text(body.get("messages", [])) if chat else str(body.get("prompt", ""))
    limit = (body.get("options") or {}).get("num_predict")
    count, finish = (
        (limit, "length")
        if isinstance(limit, int) and 0 < limit < CONFIG["tokens"]
        else (CONFIG["tokens"], "stop")
    )
    tokens = tokens_for(prompt, count)
    prompt_tokens = count_tokens(prompt)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def part(text: str) -> dict[str, Any]:
        if chat:
            return {
                "model": model,
                "created_at": now,
                "message": {"role": "assistant", "content": text},
                "done": False,
            }
        return {"model": model, "created_at": now, "response": text, "done": False}

    final = ollama_final(model, prompt_tokens, count, finish)
    if body.get("stream", True) is False:
        final.update(part("".join(tokens)))
        final["done"] = True
        await send_json(send, 200, final)
        return
    final.update(part(""))
    final["done"] = True
    frames = [_encode(part(token)) + b"\n" for token in tokens] + [_encode(final) + b"\n"]
    await stream_events(receive, send, frames, b"application/x-ndjson")


async def ollama_embed(body: dict[str, Any], send: Any) -> None:
    inputs = inputs_of(body["input"])
    dims = int(body.get("dimensions") or CONFIG["dimensions"])
    await send_json(
        send,
        200,
        {
            "model": body["model"],
            "embeddings": [embedding(text, dims) for text in inputs],
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": sum(count_tokens(text) for text in inputs),
        },
    )


def ollama_tags() -> dict[str, Any]:
    return {
        "models": [
            {
                "name": model,
                "model": model,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 1000,
                "digest": hashlib.sha256(model.encode()).hexdigest(),
                "details": {
                    "format": "gguf",
                    "family": "fake",
                    "parameter_size": "1M",
                    "quantization_level": "F32",
                },
            }
            for model in CONFIG["models"]
        ]
    }


# --- the app ---


def scope_headers(receive: Any) -> dict[str, str]:
    return CURRENT_HEADERS.get()


def transcript_of(audio: bytes) -> str:
    """The text a `text_to_wav` file carries; for other audio, words derived from a hash of its samples."""
    carried = wav_to_text(audio)
    if carried is not None:
        return carried
    frames = wav_frames(audio)
    content = frames if frames is not None else audio
    # About two words per second of 16-bit mono audio (any other audio: per 32 KB), at least one.
    count = max(1, min(64, len(content) // 16_000))
    return "".join(tokens_for(hashlib.sha256(content).hexdigest(), count)).strip()


async def openai_transcription(headers: dict[str, str], raw: bytes, send: Any) -> None:
    """OpenAI's multipart transcription: `file` and `model` (required), `response_format` json (default),
    text or verbose_json."""
    from multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(headers.get("content-type", ""))
    if not options.get("boundary"):
        await send_json(send, 400, openai_error("expected multipart/form-data"))
        return
    fields: dict[str, str] = {}
    audio: bytes | None = None
    for part in MultipartParser(io.BytesIO(raw), options["boundary"], content_length=len(raw)):
        if part.name == "file" and part.filename is not None:
            audio = part.raw
        else:
            fields[part.name] = part.value
    if audio is None or not fields.get("model"):
        await send_json(send, 400, openai_error("file and model are required"))
        return
    if fields["model"] not in CONFIG["models"]:
        await send_json(send, 404, openai_error(f"model {fields['model']} not found", "model_not_found"))
        return
    STATS["transcriptions"] += 1
    text = transcript_of(audio)
    response_format = fields.get("response_format", "json")
    if response_format == "text":
        body = text.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    payload: dict[str, Any] = {"text": text}
    if response_format == "verbose_json":
        payload.update(language=fields.get("language", "english"), duration=len(audio) / 32_000, segments=[])
    await send_json(send, 200, payload)


async def openai_speech(raw: bytes, send: Any) -> None:
    """OpenAI's speech: a real WAV (`text_to_wav`) sent in chunks; wav and pcm formats only."""
    try:
        body = _decode(raw)
        model, text = body["model"], body["input"]
    except (msgspec.DecodeError, KeyError, TypeError):
        await send_json(send, 400, openai_error("body must be JSON with model and input"))
        return
    if model not in CONFIG["models"]:
        await send_json(send, 404, openai_error(f"model {model} not found", "model_not_found"))
        return
    response_format = body.get("response_format") or "wav"
    if response_format not in ("wav", "pcm"):
        await send_json(send, 400, openai_error("this fake speaks wav and pcm only", "unsupported_format"))
        return
    STATS["speeches"] += 1
    audio = text_to_wav(str(text))
    if response_format == "pcm":
        audio = wav_frames(audio) or b""
    content_type = b"audio/wav" if response_format == "wav" else b"audio/pcm"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    for start in range(0, len(audio), 64 * 1024):
        await send(
            {"type": "http.response.body", "body": audio[start : start + 64 * 1024], "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


OPENAI_POSTS = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
OLLAMA_POSTS = {"/api/chat", "/api/generate", "/api/embed"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    CURRENT_HEADERS.set({name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]})
    if path.startswith("/_fake/"):
        await control(path, method, receive, send)
        return
    # Only generation requests count: health probes (GET /v1/models, /api/tags) are not traffic.
    counted = method == "POST"
    STATS["requests"] += counted
    STATS["in_flight"] += counted
    try:
        await serve(path, method, receive, send)
    finally:
        STATS["in_flight"] -= counted


async def serve(path: str, method: str, receive: Any, send: Any) -> None:
    fail = CONFIG["fail"]
    if fail == "500":
        await send_json(send, 500, openai_error("fake backend failure", "server_error"))
        return
    if fail == "crash":
        # The app dies mid-request, as a crashing model server does (granian answers 500 for it).
        raise RuntimeError("fake backend crashed")
    if fail == "hang":
        await asyncio.sleep(3600)
    if CONFIG["latency"]:
        await asyncio.sleep(CONFIG["latency"])
    if method == "GET" and path == "/v1/models":
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in CONFIG["models"]]
        await send_json(send, 200, {"object": "list", "data": data})
        return
    if method == "GET" and path == "/api/tags":
        await send_json(send, 200, ollama_tags())
        return
    if method == "POST" and path == "/v1/audio/transcriptions":
        await openai_transcription(scope_headers(receive), await read_body(receive), send)
        return
    if method == "POST" and path == "/v1/audio/speech":
        await openai_speech(await read_body(receive), send)
        return
    if method == "POST" and (path in OPENAI_POSTS or path in OLLAMA_POSTS):
        raw = await read_body(receive)
        try:
            body = _decode(raw)
            model = body["model"]
        except (msgspec.DecodeError, KeyError, TypeError):
            await send_json(send, 400, openai_error("body must be JSON with a model"))
            return
        if model not in CONFIG["models"]:
            if path in OLLAMA_POSTS:
                await send_json(send, 404, {"error": f"model '{model}' not found"})
            else:
                await send_json(send, 404, openai_error(f"model {model} not found", "model_not_found"))
            return
        if path == "/v1/chat/completions":
            await openai_chat(body, receive, send, text_completion=False)
        elif path == "/v1/completions":
            await openai_chat(body, receive, send, text_completion=True)
        elif path == "/v1/embeddings":
            await openai_embeddings(body, send)
        elif path == "/api/chat":
            await ollama_generate(body, receive, send, chat=True)
        elif path == "/api/generate":
            await ollama_generate(body, receive, send, chat=False)
        else:
            await ollama_embed(body, send)
        return
    await send_json(send, 404, openai_error(f"no route {method} {path}", "not_found"))


async def control(path: str, method: str, receive: Any, send: Any) -> None:
    if path == "/_fake/config" and method == "POST":
        changes = _decode(await read_body(receive))
        CONFIG.update({key: value for key, value in changes.items() if key in CONFIG})
        await send_json(send, 200, CONFIG)
    elif path == "/_fake/stats":
        await send_json(send, 200, STATS)
    else:
        await send_json(send, 404, {"error": "unknown control route"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--models", default=",".join(CONFIG["models"]), help="comma-separated model names")
    parser.add_argument("--tokens", type=int, default=CONFIG["tokens"], help="tokens per answer")
    parser.add_argument("--latency", type=float, default=CONFIG["latency"], help="seconds before answering")
    parser.add_argument(
        "--token-delay", type=float, default=CONFIG["token_delay"], help="seconds between tokens"
    )
    parser.add_argument("--salt", default=CONFIG["salt"], help="mixed into answers: a 'wrong' model")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.update(
        FAKE_MODELS=args.models,
        FAKE_TOKENS=str(args.tokens),
        FAKE_LATENCY=str(args.latency),
        FAKE_TOKEN_DELAY=str(args.token_delay),
        FAKE_SALT=args.salt,
    )
    from granian.constants import Interfaces
    from granian.server import Server

    print(
        f"fake model server on http://{args.host}:{args.port} (OpenAI /v1, Ollama /api): {args.models}",
        flush=True,
    )
    Server(
        "tests.fakes.model_server:app",
        interface=Interfaces.ASGI,
        address=args.host,
        port=args.port,
        workers=args.workers,
        log_access=False,
        working_dir=Path(__file__).resolve().parent.parent.parent,
    ).serve()


if __name__ == "__main__":
    main()
