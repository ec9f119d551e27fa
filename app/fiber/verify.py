"""Checking a Fiber signature: the nonce's shape and age, the sr25519 signature over Fiber's message, the
nonce never seen before, and the signer's registration, permit and stake (the same rules as Epistula's).

Which message is signed depends on the request (app/fiber/wire.py): with a `symmetric-key-uuid` header it
is MLTS's `nonce:miner_hotkey:uuid` (key exchange, encrypted calls), otherwise Fiber 2's
`nonce:miner_hotkey:sha256(body)`. Fiber's own miner takes `miner-hotkey` from the request as it is; Pylon
requires it to be its own hotkey, so a request signed for another miner cannot be replayed here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from bittensor_wallet import Keypair

from app.auth.epistula import EpistulaVerifier, HotkeyDirectory, ReplayGuard
from app.auth.refusal import Refused, bad_request, unauthorized
from app.fiber import wire
from app.settings import FiberSettings

REASON = "fiber"
KEYPAIR_CACHE_SIZE = 4096
REQUIRED = (wire.H_VALIDATOR, wire.H_MINER, wire.H_NONCE, wire.H_SIGNATURE)


class FiberCaller(msgspec.Struct, frozen=True, kw_only=True):
    """A verified Fiber request: the validator's hotkey and, for MLTS, the symmetric key's uuid."""

    hotkey: str
    key_uuid: str | None = None


class FiberVerifier:
    """Verifies Fiber-signed requests for this Pylon's hotkey (Epistula's: `PYLON_EPISTULA_HOTKEY` or the
    default identity's), with Epistula's signer rules (`PYLON_EPISTULA_NETUID`, permit, minimum stake)."""

    def __init__(
        self, settings: FiberSettings, epistula: EpistulaVerifier, clock: Callable[[], float] = time.time
    ) -> None:
        self.epistula = epistula
        self.window = settings.nonce_window
        self.clock = clock
        # A nonce older than the window is refused anyway, so remembering it twice as long is enough.
        self.replay = ReplayGuard(ttl=2 * settings.nonce_window, capacity=settings.replay_capacity)
        self._keypairs: OrderedDict[str, Keypair] = OrderedDict()

    @property
    def own_hotkey(self) -> str:
        return self.epistula.own_hotkey

    def keypair(self, ss58: str) -> Keypair:
        keypair = self._keypairs.get(ss58)
        if keypair is None:
            try:
                keypair = Keypair(ss58_address=ss58)
            except (ValueError, TypeError) as exc:
                raise _bad(f"validator-hotkey is not a valid ss58 address: {exc}") from None
            self._keypairs[ss58] = keypair
            if len(self._keypairs) > KEYPAIR_CACHE_SIZE:
                self._keypairs.popitem(last=False)
        return keypair

    async def verify(
        self,
        headers: Mapping[str, str],
        body: Callable[[], Awaitable[bytes]],
        directory: HotkeyDirectory,
    ) -> FiberCaller:
        """The verified caller, or `Refused` (400 malformed, 401 bad signature or nonce, 403 signer rules,
        429 replay set full). `body()` is read only for Fiber 2's body-hash message."""
        if not self.own_hotkey:
            raise _unauthorized(
                "Fiber is not enabled on this Pylon "
                "(PYLON_EPISTULA_HOTKEY is unset and there is no default wallet)"
            )
        missing = [name for name in REQUIRED if not headers.get(name)]
        if missing:
            raise _bad("missing Fiber headers: " + ", ".join(missing))
        nonce = headers[wire.H_NONCE]
        timestamp_ns = wire.nonce_timestamp_ns(nonce)
        if timestamp_ns is None:
            raise _bad("nonce must be Fiber's '<time.time_ns()>_<random>' (at most 128 characters)")
        signature = headers[wire.H_SIGNATURE]
        if not wire.SIGNATURE_RE.match(signature):
            raise _bad("signature must be 0x followed by 128 hex characters")
        miner_hotkey = headers[wire.H_MINER]
        if miner_hotkey != self.own_hotkey:
            raise _unauthorized(
                "request was signed for another miner",
                {"miner_hotkey": miner_hotkey, "expected": self.own_hotkey},
            )
        validator = headers[wire.H_VALIDATOR]
        keypair = self.keypair(validator)
        now = self.clock()
        age = now - timestamp_ns / 1e9
        if abs(age) > self.window:
            direction = "old" if age > 0 else "in the future"
            raise _unauthorized(
                f"nonce is stale: {abs(age):.1f}s {direction}; the window is {self.window:g}s"
            )
        key_uuid = headers.get(wire.H_KEY_UUID)
        if key_uuid is not None:
            if not wire.KEY_UUID_RE.match(key_uuid):
                raise _bad("symmetric-key-uuid must be 1-128 letters, digits, '-' or '_'")
            message = wire.mlts_message(nonce, miner_hotkey, key_uuid)
        else:
            message = wire.signed_message(nonce, miner_hotkey, await body())
        if not keypair.verify(message.encode(), bytes.fromhex(signature.removeprefix("0x"))):
            what = "nonce, miner-hotkey and symmetric-key-uuid" if key_uuid is not None else "nonce and body"
            raise _unauthorized(f"Fiber signature does not match the {what}")
        self._remember(validator, nonce, now)
        await self.epistula.check_signer(validator, directory, REASON)
        return FiberCaller(hotkey=validator, key_uuid=key_uuid)

    def _remember(self, validator: str, nonce: str, now: float) -> None:
        # The one call site of the replay guard (it may become shared across workers, and async).
        try:
            self.replay.check_and_remember(validator, nonce, now)
        except Refused as refused:
            if refused.status_code != 401:
                raise
            raise _unauthorized("nonce already used: Fiber accepts each nonce once") from None


def _bad(detail: str) -> Refused:
    return bad_request(detail, REASON)


def _unauthorized(detail: str, extra: dict[str, Any] | None = None) -> Refused:
    return unauthorized(detail, REASON, extra)
