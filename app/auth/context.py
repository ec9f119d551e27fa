"""What auth and the features tell each other about a request, through the ASGI scope's state.

The auth guard stores the caller (`Principal`); a feature that consumes tokens reports them (`Usage`)
before its response ends, and the usage recorder reads them once the response has been sent.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PRINCIPAL_KEY = "pylon_principal"
USAGE_KEY = "pylon_usage"

PrincipalKind = Literal["api_key", "admin_token", "metrics_token", "epistula"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: an API key, the admin or metrics token, or a validator signing with Epistula."""

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


def _state(scope: Any) -> dict[str, Any]:
    # Accepts an ASGI scope or a Litestar connection (Request, WebSocket).
    raw = scope.scope if hasattr(scope, "scope") else scope
    state: dict[str, Any] = raw.setdefault("state", {})
    return state


def set_principal(scope: Any, principal: Principal) -> None:
    _state(scope)[PRINCIPAL_KEY] = principal


def principal_of(scope: Any) -> Principal | None:
    principal: Principal | None = _state(scope).get(PRINCIPAL_KEY)
    return principal


def report_usage(scope: Any, usage: Usage) -> None:
    """Record (or replace) the tokens this request consumed; call it before the response body ends."""
    _state(scope)[USAGE_KEY] = usage


def usage_of(scope: Any) -> Usage | None:
    usage: Usage | None = _state(scope).get(USAGE_KEY)
    return usage
