"""Keys: create, list, change, revoke and report usage. The admin API and `pylon keys` both call this.

Every change also appends a row to `api_key_changes`, in the same transaction, so other workers and
instances drop the key from their caches on their next poll.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from msgspec import UNSET
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.context import Principal
from app.keys.models import ApiKey, KeyChange
from app.keys.schemas import (
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyStatus,
    KeyUpdate,
    KeyUsage,
    UsageDay,
    UsageTotals,
    parse_duration,
)
from app.keys.tokens import CachedKey, mint_key
from app.keys.usage_report import has_usage, usage_report_rows


class KeyNotFoundError(LookupError):
    """No key with this id (the API answers 404)."""


class InvalidKeyRequest(ValueError):
    """A request the service cannot carry out as asked (the API answers 400, naming `field`)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def key_status(key: ApiKey, now: dt.datetime | None = None) -> KeyStatus:
    if key.revoked_at is not None:
        return "revoked"
    expires_at = _aware(key.expires_at)
    if expires_at is not None and expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def key_info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        name=key.name,
        status=key_status(key),
        scopes=list(key.scopes),
        identity=key.identity,
        netuids=key.netuids,
        models=key.models,
        rpm=key.rpm,
        tpm=key.tpm,
        expires_at=_aware(key.expires_at),
        created_at=_aware(key.created_at) or utcnow(),
        last_used_at=_aware(key.last_used_at),
        revoked_at=_aware(key.revoked_at),
    )


def cached_key(key: ApiKey) -> CachedKey:
    expires_at = _aware(key.expires_at)
    return CachedKey(
        id=key.id,
        secret_hash=bytes.fromhex(key.secret_hash),
        principal=Principal(
            kind="api_key",
            id=key.id,
            scopes=frozenset(key.scopes),
            identity=key.identity,
            netuids=frozenset(key.netuids) if key.netuids is not None else None,
            models=frozenset(key.models) if key.models is not None else None,
        ),
        rpm=key.rpm,
        tpm=key.tpm,
        expires_at=expires_at.timestamp() if expires_at else None,
        revoked=key.revoked_at is not None,
    )


def _expiry(expires_at: dt.datetime | None, expires_in: str | None, now: dt.datetime) -> dt.datetime | None:
    if expires_at is not None and expires_in is not None:
        raise InvalidKeyRequest("give expires_at or expires_in, not both", "expires_in")
    if expires_in is not None:
        try:
            return now + parse_duration(expires_in)
        except ValueError as exc:
            raise InvalidKeyRequest(f"expires_in: {exc}", "expires_in") from None
    return _aware(expires_at)


class KeyService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _changed(self, key_id: str) -> None:
        self.session.add(KeyChange(key_id=key_id, changed_at=utcnow()))

    async def _get(self, key_id: str) -> ApiKey:
        key = await self.session.get(ApiKey, key_id)
        if key is None:
            raise KeyNotFoundError(f"no key with id {key_id!r}")
        return key

    async def create(self, data: KeyCreate, identities: Collection[str] | None = None) -> KeyCreated:
        """Mint a key; the returned `key` is the only time the secret exists outside the caller.

        `identities`, when given, are the identity names this Pylon knows: a key bound to another is
        refused. An expiry already past is refused (a key born expired is a mistake, not a wish).
        """
        now = utcnow()
        if identities is not None and data.identity is not None and data.identity not in identities:
            raise InvalidKeyRequest(
                f"identity: unknown identity {data.identity!r}; known: {', '.join(sorted(identities))}",
                "identity",
            )
        expires_at = _expiry(data.expires_at, data.expires_in, now)
        if expires_at is not None and expires_at <= now:
            raise InvalidKeyRequest(f"expires_at: {expires_at.isoformat()} has already passed", "expires_at")
        minted = mint_key()
        key = ApiKey(
            id=minted.id,
            secret_hash=minted.secret_hash,
            name=data.name,
            scopes=sorted({str(scope) for scope in data.scopes}),
            identity=data.identity,
            netuids=sorted(set(data.netuids)) if data.netuids is not None else None,
            models=sorted(set(data.models)) if data.models is not None else None,
            rpm=data.rpm,
            tpm=data.tpm,
            expires_at=expires_at,
            created_at=now,
        )
        self.session.add(key)
        # A process that saw this id as unknown (negative cache) forgets that.
        await self._changed(key.id)
        await self.session.commit()
        info = key_info(key)
        return KeyCreated(**{f: getattr(info, f) for f in info.__struct_fields__}, key=minted.token)

    async def list(self, include_revoked: bool = True) -> list[KeyInfo]:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return [key_info(key) for key in (await self.session.scalars(query)).all()]

    async def get(self, key_id: str) -> KeyInfo:
        return key_info(await self._get(key_id))

    async def update(self, key_id: str, data: KeyUpdate) -> KeyInfo:
        key = await self._get(key_id)
        if data.name is not UNSET:
            key.name = data.name
        if data.rpm is not UNSET:
            key.rpm = data.rpm
        if data.tpm is not UNSET:
            key.tpm = data.tpm
        if data.expires_at is not UNSET or data.expires_in is not UNSET:
            key.expires_at = _expiry(
                None if data.expires_at is UNSET else data.expires_at,
                None if data.expires_in is UNSET else data.expires_in,
                utcnow(),
            )
        await self._changed(key.id)
        await self.session.commit()
        return key_info(key)

    async def revoke(self, key_id: str) -> KeyInfo:
        """Revoke for good (idempotent); every process refuses the key once it sees the change."""
        key = await self._get(key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self._changed(key.id)
            await self.session.commit()
        return key_info(key)

    async def load(self, key_id: str) -> CachedKey | None:
        """What the cache needs to verify a key (None for an unknown id)."""
        key = await self.session.get(ApiKey, key_id)
        return cached_key(key) if key is not None else None

    async def usage(self, key_id: str, days: int = 30) -> KeyUsage:
        """Totals and a per-day series for the last `days` days (UTC), for a key id or an Epistula hotkey."""
        if await self.session.get(ApiKey, key_id) is None and not await has_usage(self.session, key_id):
            raise KeyNotFoundError(f"no key or Epistula hotkey with id {key_id!r}")
        since = utcnow().date() - dt.timedelta(days=days - 1)
        series = [
            UsageDay(day=day, requests=n, errors=e, prompt_tokens=p, completion_tokens=c)
            for day, n, e, p, c in await usage_report_rows(self.session, key_id, since)
        ]
        totals = UsageTotals(
            requests=sum(d.requests for d in series),
            errors=sum(d.errors for d in series),
            prompt_tokens=sum(d.prompt_tokens for d in series),
            completion_tokens=sum(d.completion_tokens for d in series),
        )
        return KeyUsage(id=key_id, since=since, totals=totals, days=series)
