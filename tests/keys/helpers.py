"""Helpers shared by the keys and auth tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bittensor_wallet import Wallet
from litestar.testing import AsyncTestClient

ADMIN = {"Authorization": "Bearer test-admin-token"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_key(client: AsyncTestClient, scopes: list[str], **fields: Any) -> dict[str, Any]:
    """Create a key through the admin API; returns the response body (with `key`, the secret)."""
    response = await client.post(
        "/api/v1/keys", json={"name": "test", "scopes": scopes, **fields}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_wallet(folder: Path, name: str) -> Wallet:
    """A real bittensor wallet with an unencrypted hotkey in a temporary folder (no network)."""
    wallet = Wallet(name=name, hotkey="default", path=str(folder))
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet
