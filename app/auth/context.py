"""Who is calling and what a request consumed: the plain values that auth, the features and the request
pipeline (app/http/) pass to each other."""

from __future__ import annotations

from typing import Literal

import msgspec

PrincipalKind = Literal[
    "api_key", "admin_token", "metrics_token", "epistula", "fiber", "open_access", "identity_token"
]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: an API key, the admin or metrics token, a validator signing with Epistula, or one of
    bittensor-pylon's tokens (open access, an identity's)."""

    kind: PrincipalKind
    # The key's public id, "admin", "metrics", or the signer's ss58 hotkey.
    id: str
    scopes: frozenset[str]
    # Wallet identity a key is bound to (weights); None means the default identity only.
    identity: str | None = None
    # None means any netuid / any model.
    netuids: frozenset[int] | None = None
    models: frozenset[str] | None = None

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def allows_netuid(self, netuid: int) -> bool:
        return self.netuids is None or netuid in self.netuids


class Usage(msgspec.Struct, kw_only=True):
    """Tokens a request consumed, as the backend reported them."""

    model: str | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
