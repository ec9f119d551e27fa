"""Epistula v2: requests signed with the caller's sr25519 hotkey (validators calling miners).

The signed message is `f"{sha256(body).hexdigest()}.{uuid}.{timestamp}.{signed_for}"`, the hash taken over
the exact bytes received. Public implementations (macrocosm-os/apex, BitMind) skip replay protection;
Pylon remembers every `(signed_by, uuid)` it accepted for twice the timestamp window, so a captured request
cannot be sent again while its timestamp is still acceptable. The time-based `Epistula-Secret-Signature-*`
headers are implemented inconsistently across subnets and are ignored.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid as uuid_module
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec
from bittensor_wallet import Keypair

from app.auth.refusal import Refusal, Refused, bad_request, forbidden, unauthorized
from app.settings import EpistulaSettings

VERSION = "2"
H_VERSION = "epistula-version"
H_TIMESTAMP = "epistula-timestamp"
H_UUID = "epistula-uuid"
H_SIGNED_BY = "epistula-signed-by"
H_SIGNED_FOR = "epistula-signed-for"
H_SIGNATURE = "epistula-request-signature"
# The auth failures metric label of every refused signature.
REASON = "epistula"
REQUIRED_HEADERS = (H_TIMESTAMP, H_UUID, H_SIGNED_BY, H_SIGNED_FOR, H_SIGNATURE)
SIGNATURE_RE = re.compile(r"^0x[0-9a-fA-F]{128}$")
# Verifying keypairs kept at once; a validator set is a few hundred hotkeys per subnet.
KEYPAIR_CACHE_SIZE = 4096


class HotkeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the metagraph says about a signer."""

    registered: bool = True
    validator_permit: bool = False
    stake: float = 0.0


class HotkeyDirectory(Protocol):
    """Where registration, permit and stake come from (the metagraph cache in production)."""

    async def lookup(self, netuid: int, hotkey: str) -> HotkeyInfo | None: ...


class StaticHotkeyDirectory:
    """A fixed set of hotkeys from `PYLON_EPISTULA_HOTKEYS` (`ss58` or `ss58:stake`), each with a permit.

    A stop-gap until the metagraph cache is plugged in: it answers for every netuid alike.
    """

    def __init__(self, hotkeys: Mapping[str, HotkeyInfo]) -> None:
        self._hotkeys = dict(hotkeys)

    @classmethod
    def from_settings(cls, settings: EpistulaSettings) -> StaticHotkeyDirectory:
        hotkeys: dict[str, HotkeyInfo] = {}
        for entry in settings.hotkeys:
            hotkey, _, stake = entry.partition(":")
            hotkeys[hotkey.strip()] = HotkeyInfo(validator_permit=True, stake=float(stake) if stake else 0.0)
        return cls(hotkeys)

    async def lookup(self, netuid: int, hotkey: str) -> HotkeyInfo | None:
        return self._hotkeys.get(hotkey)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_message(body: bytes, request_uuid: str, timestamp: int | str, signed_for: str) -> str:
    """The exact string an Epistula v2 signature covers."""
    return f"{body_hash(body)}.{request_uuid}.{timestamp}.{signed_for}"


def sign_request(
    keypair: Any,
    body: bytes,
    signed_for: str,
    *,
    request_uuid: str | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    """Epistula v2 headers for `body`, signed by `keypair` (a bittensor_wallet Keypair or wallet.hotkey)."""
    request_uuid = request_uuid or str(uuid_module.uuid4())
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    signature = keypair.sign(signed_message(body, request_uuid, timestamp_ms, signed_for).encode())
    return {
        "Epistula-Version": VERSION,
        "Epistula-Timestamp": str(timestamp_ms),
        "Epistula-Uuid": request_uuid,
        "Epistula-Signed-By": keypair.ss58_address,
        "Epistula-Signed-For": signed_for,
        "Epistula-Request-Signature": "0x" + bytes(signature).hex(),
    }


class ReplayGuard:
    """Remembers accepted `(signed_by, uuid)` pairs for `ttl` seconds, at most `capacity` at once.

    Every entry lives exactly `ttl`, so insertion order is expiry order and purging pops from the front.
    """

    def __init__(self, ttl: float, capacity: int) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest_key = next(iter(seen))
            if seen[oldest_key] > now:
                break
            del seen[oldest_key]

    def check_and_remember(self, signed_by: str, request_uuid: str, now: float) -> None:
        self._purge(now)
        key = (signed_by, request_uuid)
        if key in self._seen:
            raise _unauthorized("Epistula request replayed: this Epistula-Uuid was already used")
        if len(self._seen) >= self.capacity:
            # Forgetting an unexpired uuid would reopen a replay; refusing new signatures is the safe side.
            raise Refused(
                Refusal(
                    status_code=429,
                    detail="too many signed requests within the replay window",
                    reason=REASON,
                    headers={"Retry-After": "1"},
                )
            )
        self._seen[key] = now + self.ttl


class EpistulaVerifier:
    """Checks Epistula v2 headers and body; one Keypair cached per signer."""

    def __init__(
        self,
        settings: EpistulaSettings,
        default_netuid: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.own_hotkey = settings.hotkey
        self.netuid = settings.netuid if settings.netuid is not None else default_netuid
        self.window = settings.window
        self.require_validator_permit = settings.require_validator_permit
        self.min_stake = settings.min_stake
        self.clock = clock
        self.replay = ReplayGuard(ttl=2 * settings.window, capacity=settings.replay_capacity)
        self._keypairs: OrderedDict[str, Keypair] = OrderedDict()

    def use_default_hotkey(self, ss58: str) -> bool:
        """Accept requests signed for `ss58` (the default identity's hotkey) unless PYLON_EPISTULA_HOTKEY
        names one; returns whether it was taken."""
        if self.own_hotkey:
            return False
        self.own_hotkey = ss58
        return True

    def keypair(self, ss58: str) -> Keypair:
        keypair = self._keypairs.get(ss58)
        if keypair is None:
            try:
                keypair = Keypair(ss58_address=ss58)
            except (ValueError, TypeError) as exc:
                raise _bad(f"Epistula-Signed-By is not a valid ss58 address: {exc}") from None
            self._keypairs[ss58] = keypair
            if len(self._keypairs) > KEYPAIR_CACHE_SIZE:
                self._keypairs.popitem(last=False)
        return keypair

    async def verify(self, headers: Mapping[str, str], body: bytes, directory: HotkeyDirectory) -> str:
        """Return the signer's hotkey, or raise `Refused` (400/401/403/429) saying what is wrong."""
        if not self.own_hotkey:
            raise _unauthorized(
                "Epistula is not enabled on this Pylon "
                "(PYLON_EPISTULA_HOTKEY is unset and there is no default wallet)"
            )
        version = headers.get(H_VERSION)
        if version != VERSION:
            raise _bad(f"unsupported Epistula-Version {version!r}: only version 2 is accepted")
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            raise _bad("missing Epistula headers: " + ", ".join(_title(n) for n in missing))
        raw_timestamp = headers[H_TIMESTAMP]
        try:
            timestamp = int(raw_timestamp)
        except ValueError:
            raise _bad("Epistula-Timestamp must be Unix time in milliseconds") from None
        request_uuid = headers[H_UUID]
        try:
            uuid_module.UUID(request_uuid)
        except ValueError:
            raise _bad("Epistula-Uuid is not a UUID") from None
        signature = headers[H_SIGNATURE]
        if not SIGNATURE_RE.match(signature):
            raise _bad("Epistula-Request-Signature must be 0x followed by 128 hex characters")
        signed_by = headers[H_SIGNED_BY]
        signed_for = headers[H_SIGNED_FOR]
        keypair = self.keypair(signed_by)
        if signed_for != self.own_hotkey:
            raise _unauthorized(
                "request was signed for another hotkey",
                extra={"signed_for": signed_for, "expected": self.own_hotkey},
            )
        now = self.clock()
        skew = now - timestamp / 1000
        if abs(skew) > self.window:
            direction = "old" if skew > 0 else "far in the future"
            raise _unauthorized(
                f"Epistula-Timestamp is {abs(skew):.1f}s {direction}; the window is {self.window:g}s"
            )
        message = signed_message(body, request_uuid, raw_timestamp, signed_for)
        if not keypair.verify(message.encode(), bytes.fromhex(signature[2:])):
            raise _unauthorized("Epistula signature does not match the body and headers")
        self.replay.check_and_remember(signed_by, request_uuid, now)
        await self.check_signer(signed_by, directory)
        return signed_by

    async def check_signer(self, signed_by: str, directory: HotkeyDirectory, reason: str = REASON) -> None:
        """The metagraph's rules for a signer (registration, permit, stake), shared by every signature
        scheme (Epistula, Fiber): raise `Refused` (403) naming the rule it breaks."""
        info = await directory.lookup(self.netuid, signed_by)
        if info is None or not info.registered:
            raise forbidden(f"hotkey {signed_by} is not registered on netuid {self.netuid}", reason)
        if self.require_validator_permit and not info.validator_permit:
            raise forbidden(f"hotkey {signed_by} has no validator permit on netuid {self.netuid}", reason)
        if info.stake < self.min_stake:
            raise forbidden(
                f"hotkey {signed_by} stakes {info.stake:g}, below the minimum of {self.min_stake:g}", reason
            )


def _bad(detail: str) -> Refused:
    return bad_request(detail, REASON)


def _unauthorized(detail: str, extra: dict[str, Any] | None = None) -> Refused:
    return unauthorized(detail, REASON, extra)


def _title(header: str) -> str:
    return "-".join(part.capitalize() for part in header.split("-"))
