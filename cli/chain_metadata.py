"""`pylon chain dump-metadata`: record a live node's runtime (the two answers `pylon localnet` serves)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import CliError, err_console, handle_errors, status_line

NETWORK_ALIASES = {
    "finney": "wss://entrypoint-finney.opentensor.ai:443",
    "test": "wss://test.finney.opentensor.ai:443",
    "archive": "wss://archive.chain.opentensor.ai:443",
    "local": "ws://127.0.0.1:9944",
}
# Metadata_metadata_at_version(15), the u32 argument SCALE-encoded.
METADATA_V15_ARGUMENT = "0x0f000000"


async def _rpc(url: str, calls: list[tuple[str, Any]], limit: float) -> list[Any]:
    """Answers to JSON-RPC calls, in order, over a websocket (ws/wss) or HTTP POST (http/https)."""
    requests = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls, 1)]
    answers: dict[int, Any] = {}
    if url.startswith(("ws://", "wss://")):
        import websockets.asyncio.client

        async with asyncio.timeout(limit):
            async with websockets.asyncio.client.connect(url, max_size=2**26) as ws:
                for request in requests:
                    await ws.send(json.dumps(request))
                while len(answers) < len(requests):
                    message = json.loads(await ws.recv())
                    if "id" in message:
                        answers[message["id"]] = message
    elif url.startswith(("http://", "https://")):
        import httpx

        async with httpx.AsyncClient(timeout=limit) as client:
            for request in requests:
                response = await client.post(url, json=request)
                answers[request["id"]] = response.json()
    else:
        raise CliError(
            f"--network: expected finney, test, archive, local or a ws(s)/http(s) URL, got {url!r}"
        )
    results = []
    for request in requests:
        answer = answers[request["id"]]
        if answer.get("error"):
            raise CliError(f"{request['method']} failed on {url}: {answer['error'].get('message')}")
        results.append(answer.get("result"))
    return results


app = typer.Typer(
    help="Chain tools.", no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False
)


@app.command("dump-metadata")
@handle_errors
def dump_metadata(
    network: Annotated[
        str, typer.Option(envvar="PYLON_NETWORK", help="finney, test, archive, local or a ws(s):// URL.")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write metadata_v15.json and runtime_version.json to.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 60.0,
) -> None:
    """Record a live node's runtime metadata (V15) and version, for `pylon localnet --metadata-dir`."""
    from app.devchain.node.codec import METADATA_FILE, RUNTIME_VERSION_FILE, Runtime

    url = NETWORK_ALIASES.get(network, network)
    with status_line(f"Reading the runtime metadata and version from {url}") as status:
        try:
            metadata, version = asyncio.run(
                _rpc(
                    url,
                    [
                        ("state_call", ["Metadata_metadata_at_version", METADATA_V15_ARGUMENT]),
                        ("state_getRuntimeVersion", []),
                    ],
                    timeout,
                )
            )
        except TimeoutError as exc:
            raise CliError(f"no answer from {url} within {timeout:g}s") from exc
        except OSError as exc:
            raise CliError(f"cannot reach {url}: {exc}") from exc
        if not isinstance(metadata, str) or metadata in ("0x", "0x00"):
            raise CliError(
                f"{url} has no V15 metadata (Metadata_metadata_at_version(15) returned {metadata!r})"
            )
        status.step_done(f"read {len(metadata) // 2 // 1024} KiB of metadata from {url}")
        status.update("Decoding the metadata")
        # Fails here, not later in `pylon localnet`, if the answer is not metadata this code can read.
        Runtime(metadata, version)
        status.step_done("decoded the metadata")
        status.update(f"Writing {METADATA_FILE} and {RUNTIME_VERSION_FILE} into {out}")
        out.mkdir(parents=True, exist_ok=True)
        (out / METADATA_FILE).write_text(json.dumps(metadata))
        (out / RUNTIME_VERSION_FILE).write_text(json.dumps(version, indent=2))
    err_console.print(
        f"Recorded {version.get('specName')} spec {version.get('specVersion')} from {url} into {out}",
        highlight=False,
        soft_wrap=True,
    )
