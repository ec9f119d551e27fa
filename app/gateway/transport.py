"""Calling one miner: signing and sending, behind a narrow interface.

    class MinerTransport(Protocol):
        async def request(self, miner, path, body, *, read_timeout, stream=False) -> MinerResponse

`EpistulaTransport` signs each request with Epistula v2 (the identity's hotkey, `Epistula-Signed-For` the
miner's hotkey) and sends it over the worker's upstream pool (app/inference/upstream.py) to
`http://ip:port` + path prefix + `path`. The allowed-networks check comes first, before any socket: a
refused axon raises `MinerRefused` without a connection attempt. Another transport (a Fiber client) only
has to answer `request` with an object that has `status`, `body`, async iteration over body pieces
(streams), `read()` and `close()`; every failure is a `MinerUnreachable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from app.auth.epistula import sign_request
from app.gateway.networks import AllowedNetworks
from app.gateway.selection import Miner
from app.inference.upstream import Target, UpstreamError, UpstreamPool

# Prepared request heads kept at once (miners x paths); a subnet has at most a few hundred axons.
MAX_TARGETS = 4096


class MinerUnreachable(Exception):
    """No (complete) answer from the miner: connect error, reset, timeout."""


class MinerRefused(MinerUnreachable):
    """The gateway may not call this address (PYLON_GATEWAY_ALLOWED_NETWORKS): nothing was sent."""


class MinerResponse(Protocol):
    status: int
    body: bytes

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


class MinerTransport(Protocol):
    async def request(
        self, miner: Miner, path: str, body: bytes, *, read_timeout: float, stream: bool = False
    ) -> MinerResponse:
        """Send `body` to the miner's `path`; the whole answer (or, streaming, its head). Raises
        MinerRefused (not allowed, nothing sent) or MinerUnreachable."""
        ...


class EpistulaTransport:
    """Epistula v2-signed HTTP/1.1 to miners' axons."""

    def __init__(
        self,
        pool: UpstreamPool,
        keypair: Any,
        allowed: AllowedNetworks,
        *,
        path_prefix: str = "",
        connect_timeout: float = 5.0,
    ) -> None:
        self.pool = pool
        self.keypair = keypair
        self.allowed = allowed
        self.path_prefix = path_prefix.rstrip("/")
        self.connect_timeout = connect_timeout
        self._targets: dict[tuple[str, int, str], Target] = {}

    def _target(self, miner: Miner, path: str) -> Target:
        key = (miner.ip, miner.port, path)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            host = f"[{miner.ip}]" if ":" in miner.ip else miner.ip
            url = f"http://{host}:{miner.port}{self.path_prefix}{path}"
            target = self._targets[key] = self.pool.target(
                "POST", url, {"Content-Type": "application/json"}, connect_timeout=self.connect_timeout
            )
        return target

    async def request(
        self, miner: Miner, path: str, body: bytes, *, read_timeout: float, stream: bool = False
    ) -> MinerResponse:
        if not self.allowed.allows(miner.ip):
            raise MinerRefused(f"{miner.ip} is not an allowed address ({self.allowed.describe()})")
        base = self._target(miner, path)
        signed = sign_request(self.keypair, body, miner.hotkey)
        # The prepared head plus this request's signature headers (values are ours: no line breaks).
        head = base.head + "".join(f"{name}: {value}\r\n" for name, value in signed.items()).encode()
        target = Target(base.origin, head, True, base.connect_timeout)
        try:
            response: MinerResponse = await self.pool.request(
                target, body, read_timeout=read_timeout, stream=stream
            )
        except UpstreamError as exc:
            raise MinerUnreachable(str(exc) or type(exc).__name__) from exc
        return response
