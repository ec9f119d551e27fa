"""The development node of `pylon serve`: the simulated chain run once, as a local subtensor node.

With `PYLON_NETWORK=local`, `pylon serve` starts it before granian and points every worker at it
(`PYLON_LOCAL_NODE_URL`), so the workers, the CLI, other Pylons and turbobt scripts read one chain.

It runs in a spawned child process, not in a thread of `pylon serve`: granian forks its workers from the serve
process, and a forked worker would inherit the node's sockets (a connection the node closes stays open while a
worker holds its copy) and any lock the node's thread held at the fork. The child also stops when its parent
goes away (`kill -9` of `pylon serve` leaves no node holding the port).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import os
import signal
from collections.abc import Collection, Mapping
from multiprocessing.connection import Connection
from typing import Any

import structlog

from app.settings import Settings

log = structlog.get_logger(__name__)

NODE_HOST = "127.0.0.1"
# What `system_chain` answers on a Pylon node: a probe tells it from any other service on the port.
NODE_CHAIN_NAME = "Pylon localnet"
# Seconds the CLI waits for a probe's answer. A missing node refuses the connection at once; a busy one
# (256 neurons encoded per block) may take a moment.
PROBE_TIMEOUT = 3.0

# {hotkey: netuids (None: every subnet)} registered with a validator permit before the node serves.
Registrations = Mapping[str, Collection[int] | None]


class DevNodeError(Exception):
    """The development node could not start; the message says why and which setting to change."""


def node_url(port: int, host: str = NODE_HOST) -> str:
    return f"ws://{host}:{port}"


def port_taken_message(port: int, variable: str = "PYLON_LOCAL_NODE_PORT") -> str:
    return (
        f"{NODE_HOST}:{port} is taken, the development node cannot listen there: set {variable} to a free "
        "port (or stop what holds it)"
    )


def rpc(url: str, method: str, params: Any = (), timeout: float = 10.0) -> Any:
    """One JSON-RPC call over the node's HTTP POST; raises ConnectionError (not up) or RuntimeError."""
    import http.client
    import json
    from urllib.parse import urlsplit

    # http.client, not httpx: no TLS context to build, so a probe of a missing node costs nothing.
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or NODE_HOST, parts.port or 9944, timeout=timeout)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        answer = json.loads(connection.getresponse().read())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ConnectionError(f"no development node answers at {url} ({type(exc).__name__})") from exc
    finally:
        connection.close()
    if not isinstance(answer, dict):
        raise ConnectionError(f"no development node answers at {url} (not JSON-RPC)")
    if "error" in answer:
        error = answer["error"]
        raise RuntimeError(str(error.get("message", error) if isinstance(error, dict) else error))
    return answer.get("result")


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when a Pylon development node answers at `url` (a real subtensor node there does not count)."""
    try:
        return bool(rpc(url, "system_chain", timeout=timeout) == NODE_CHAIN_NAME)
    except (ConnectionError, RuntimeError):
        return False


class DevNodeProcess:
    """Start the node in a child process and wait until it listens; `stop()` ends it."""

    def __init__(self, settings: Settings, validators: Registrations) -> None:
        self.settings = settings
        self.validators = dict(validators)
        self.port = settings.devchain.node_port
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready: Connection | None = None

    @property
    def url(self) -> str:
        return node_url(self.port)

    def start(self) -> None:
        """Start the node's process and return at once (it loads the runtime meanwhile): see `wait`."""
        context = multiprocessing.get_context("spawn")
        self._ready, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_run_node,
            args=(self.settings, self.validators, sender, os.getpid()),
            name="pylon-devnode",
            daemon=True,
        )
        process.start()
        sender.close()
        self._process = process

    def wait(self, timeout: float = 120.0) -> str:
        """Wait until the node listens; returns its ws:// URL. Raises DevNodeError (port taken, failed)."""
        assert self._process is not None and self._ready is not None, "start() first"
        receiver, process = self._ready, self._process
        if not receiver.poll(timeout):
            self.stop()
            raise DevNodeError(f"the development node did not start within {timeout:g}s")
        try:
            kind, value = receiver.recv()
        except EOFError:
            self.stop()
            raise DevNodeError(f"the development node exited at start (code {process.exitcode})") from None
        if kind == "error":
            self.stop()
            raise DevNodeError(str(value))
        self.port = int(value)
        return self.url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.is_alive():
            process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def _run_node(settings: Settings, validators: Registrations, ready: Connection, parent: int) -> None:
    """The child process: build the node, register the validators, listen, report the port, serve."""
    from app.logging import configure_logging

    # The node is no worker: its metrics (if any) stay out of the workers' multiprocess folder.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Ctrl-C reaches the whole process group: `pylon serve` stops the node itself, after its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.logging)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, validators, ready, parent))


async def _serve(settings: Settings, validators: Registrations, ready: Connection, parent: int) -> None:
    from app.devchain.node.server import LocalnetServer

    try:
        node = build_dev_node(settings, validators)
        server = LocalnetServer(node, host=NODE_HOST, port=settings.devchain.node_port)
        await server.start()
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        ready.send(("error", port_taken_message(settings.devchain.node_port) if taken else str(exc)))
        return
    except Exception as exc:
        ready.send(("error", f"the development node failed to start: {type(exc).__name__}: {exc}"))
        return
    ready.send(("ready", server.port))
    ready.close()
    try:
        # An orphan would hold the port forever: stop once the parent is gone. Nothing signals a parent's
        # death (a pipe would stay open in the workers granian forks from it): poll the parent pid.
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        log.info("devnode_parent_gone", parent=parent)
    finally:
        await server.stop()


def build_dev_node(settings: Settings, validators: Registrations) -> Any:
    """The node over the chain `PYLON_LOCAL_*` describes, `validators` registered with a permit."""
    from app.devchain.client import chain_from_settings
    from app.devchain.node.codec import Runtime
    from app.devchain.node.node import LocalNode, register_hotkey

    chain = chain_from_settings(settings.devchain)
    for hotkey, netuids in validators.items():
        # An identity may name subnets this chain lacks (as register_dev_validator, those are skipped).
        chosen = None if netuids is None else [n for n in netuids if n in chain.netuids]
        uids = register_hotkey(chain, hotkey, chosen, validator=True)
        for netuid, uid in uids.items():
            log.info("local_validator_registered", hotkey=hotkey, netuid=netuid, uid=uid)
    return LocalNode(Runtime.from_dir(), chain, block_time=settings.devchain.block_time)
