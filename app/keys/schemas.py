"""Request and response bodies of the keys API (and the CLI's `--json`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.auth.scopes import Scope
from app.inputs import I64_MAX, NO_CONTROL_CHARACTERS, Netuid

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
ModelName = Annotated[str, Meta(min_length=1, max_length=256, pattern=NO_CONTROL_CHARACTERS)]
IdentityName = Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]
# A limit the database stores (a signed 64-bit column).
PerMinute = Annotated[int, Meta(ge=1, le=I64_MAX)]
# ASCII digits (`\d` would take any Unicode digit), at most what `MAX_DURATION` could need.
Duration = Annotated[str, Meta(pattern=r"^[0-9]{1,12}[smhdw]$", examples=["30d", "12h"])]
KeyStatus = Literal["active", "expired", "revoked"]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Longer than any key should live, and far inside what a datetime (and the database) holds.
MAX_DURATION = dt.timedelta(days=100 * 366)


def parse_duration(text: str) -> dt.timedelta:
    """`30d`, `12h`, `15m`, `45s`, `2w` -> a timedelta; ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9]{1,12})\s*([smhdw])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a duration like 30d, 12h, 15m, 45s or 2w, got {text!r}")
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"a duration of at most {MAX_DURATION.days} days is accepted, got {text!r}")
    return dt.timedelta(seconds=seconds)


class KeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new key. `expires_in` (e.g. `30d`) and `expires_at` are alternatives."""

    name: Name
    scopes: Annotated[list[Scope], Meta(min_length=1)]
    identity: IdentityName | None = None
    netuids: list[Netuid] | None = None
    models: list[ModelName] | None = None
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    expires_at: dt.datetime | None = None
    expires_in: Duration | None = None


class KeyUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; a field left out stays, `null` clears a limit or the expiry."""

    name: Name | UnsetType = UNSET
    rpm: PerMinute | UnsetType | None = UNSET
    tpm: PerMinute | UnsetType | None = UNSET
    expires_at: dt.datetime | UnsetType | None = UNSET
    expires_in: Duration | UnsetType = UNSET


class KeyInfo(msgspec.Struct, kw_only=True):
    """A key as listed: never its secret."""

    id: str
    name: str
    status: KeyStatus
    scopes: list[str]
    identity: str | None
    netuids: list[int] | None
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class KeyCreated(KeyInfo, kw_only=True):
    """The new key; `key` (the secret) is shown this once and never again."""

    key: str


class UsageTotals(msgspec.Struct, kw_only=True):
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class UsageDay(UsageTotals, kw_only=True):
    day: dt.date


class KeyUsage(msgspec.Struct, kw_only=True):
    """Usage of a key (or an Epistula hotkey) since `since`: totals and one entry per day with requests."""

    id: str
    since: dt.date
    totals: UsageTotals
    days: list[UsageDay]
