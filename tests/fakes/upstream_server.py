"""A tiny internal server for the upstream proxy's tests and benchmark (aiohttp.web, on loopback).

    uv run python -m tests.fakes.upstream_server --port 7000

- `ANY /echo[/...]`: the request as seen (method, path, query, headers as a list) and the body's size and
  SHA-256, read piece by piece (never held whole);
- `GET /stream?chunks=N&size=B&delay=S[&hold=1]`: N chunks of B bytes, S seconds apart (with `hold`, the
  second waits for `FakeUpstream.release`); `FakeUpstream.stream_finished` is set once the last is written;
- `POST /upload`: reads the body piece by piece; `FakeUpstream.upload_started` is set at its first piece;
  answers its size, SHA-256 and the largest piece;
- `GET /download?mb=N`: N MiB of zero bytes in 64 KiB pieces;
- `GET /slow?delay=S`: answers after S seconds;
- `GET /hop`: an answer carrying hop-by-hop headers (`Connection: X-Hop`, `X-Hop`, `Keep-Alive`) and an
  end-to-end `X-Kept`;
- `GET /`: 200 (the health probe), `POST /_fake/health {"status": 503}` changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading

from aiohttp import web

PIECE = 64 * 1024


class FakeUpstream:
    """The app and the events tests wait on (thread events: the fake may run in a thread of its own)."""

    def __init__(self) -> None:
        self.upload_started = threading.Event()
        self.stream_finished = threading.Event()
        # `/stream?hold=1` waits for this after its first chunk (tests set it once they have read that one).
        self.release = threading.Event()
        self.health_status = 200
        self.requests = 0
        self.app = web.Application(client_max_size=1024**4)
        self.app.router.add_route("*", "/echo", self.echo)
        self.app.router.add_route("*", "/echo/{rest:.*}", self.echo)
        self.app.router.add_get("/stream", self.stream)
        self.app.router.add_post("/upload", self.upload)
        self.app.router.add_get("/download", self.download)
        self.app.router.add_get("/slow", self.slow)
        self.app.router.add_get("/hop", self.hop)
        self.app.router.add_get("/", self.health)
        self.app.router.add_post("/_fake/health", self.set_health)
        self.runner: web.AppRunner | None = None

    async def start(self, port: int, host: str = "127.0.0.1") -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def serve_in_thread(self, port: int) -> threading.Thread:
        """Serve from a thread with its own event loop (tests share one fake across their loops)."""
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start(port))
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        thread.start()
        started.wait(10)
        return thread

    def stop_thread(self, thread: threading.Thread) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(10)

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        digest, size, _ = await _read(request)
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path.partition("?")[0],
                "query": request.raw_path.partition("?")[2],
                "headers": _decoded(request.raw_headers),
                "size": size,
                "sha256": digest,
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "5"))
        size = int(request.query.get("size", "16"))
        delay = float(request.query.get("delay", "0"))
        hold = request.query.get("hold") == "1"
        self.stream_finished.clear()
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for index in range(chunks):
            if index == 1 and hold:
                await asyncio.to_thread(self.release.wait, 30)
            if index and delay:
                await asyncio.sleep(delay)
            await response.write(bytes([65 + index % 26]) * size)
        self.stream_finished.set()
        await response.write_eof()
        return response

    async def upload(self, request: web.Request) -> web.Response:
        digest, size, largest = await _read(request, on_first=self.upload_started.set)
        return web.json_response({"size": size, "sha256": digest, "largest_piece": largest})

    async def download(self, request: web.Request) -> web.StreamResponse:
        mib = int(request.query.get("mb", "1"))
        response = web.StreamResponse(headers={"Content-Length": str(mib * 1024 * 1024)})
        await response.prepare(request)
        piece = bytes(PIECE)
        for _ in range(mib * 1024 * 1024 // PIECE):
            await response.write(piece)
        await response.write_eof()
        return response

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "5")))
        return web.json_response({"slept": True})

    async def hop(self, request: web.Request) -> web.Response:
        response = web.json_response({"hop": True})
        response.headers["X-Hop"] = "secret"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["Connection"] = "keep-alive, X-Hop"
        response.headers["X-Kept"] = "yes"
        return response

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": self.health_status < 500}, status=self.health_status)

    async def set_health(self, request: web.Request) -> web.Response:
        self.health_status = int((await request.json())["status"])
        return web.json_response({"status": self.health_status})


def _decoded(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


async def _read(request: web.Request, on_first: object = None) -> tuple[str, int, int]:
    digest = hashlib.sha256()
    size = largest = 0
    async for piece in request.content.iter_any():
        if size == 0 and callable(on_first):
            on_first()
        digest.update(piece)
        size += len(piece)
        largest = max(largest, len(piece))
    return digest.hexdigest(), size, largest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    args = parser.parse_args()

    async def run() -> None:
        fake = FakeUpstream()
        await fake.start(args.port, args.host)
        print(json.dumps({"listening": f"http://{args.host}:{args.port}"}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
