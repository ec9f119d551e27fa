"""Credentials for the benchmarks: a real API key minted in the database the benchmarked server uses.

Routes are guarded, so a benchmark that sent nothing would measure 401s. An API key is what callers send
in production (the admin token skips the key cache and the usage recorder), so that is what we measure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def mint_key(env: Mapping[str, str], scopes: list[str]) -> str:
    """Migrate the database `env` points at and create a key with `scopes`; returns the secret."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.auth.scopes import Scope
    from app.db import create_engine, migrations
    from app.keys.schemas import KeyCreate
    from app.keys.service import KeyService
    from app.settings import load_settings

    settings = load_settings(env)
    migrations(settings).upgrade("head")

    async def create() -> str:
        engine = create_engine(settings)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                created = await KeyService(session).create(
                    KeyCreate(name="bench", scopes=[Scope(scope) for scope in scopes])
                )
        finally:
            await engine.dispose()
        return created.key

    return asyncio.run(create())
