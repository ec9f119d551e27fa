"""A refused request, as a plain value: what authentication and signature checks answer instead of raising
HTTP exceptions. The HTTP layer (app/http/) renders it with the route's error format."""

from __future__ import annotations

from typing import Any

import msgspec

from app.auth.context import Principal

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="pylon"'}


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    status_code: int
    detail: str
    # The `pylon_auth_failures_total` label (`missing`, `malformed`, `scope`, `epistula`, ...).
    reason: str
    headers: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    # The caller, when it is known (a key refused for its scope or its rate limit): its request is still
    # counted in its usage.
    principal: Principal | None = None


class Refused(Exception):
    """Raised by checks that run deep in a call (Epistula's verifier); carries the Refusal to answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal

    @property
    def status_code(self) -> int:
        return self.refusal.status_code

    @property
    def detail(self) -> str:
        return self.refusal.detail


def bad_request(detail: str, reason: str) -> Refused:
    return Refused(Refusal(status_code=400, detail=detail, reason=reason))


def unauthorized(detail: str, reason: str, extra: dict[str, Any] | None = None) -> Refused:
    return Refused(Refusal(status_code=401, detail=detail, reason=reason, extra=extra))


def forbidden(detail: str, reason: str, extra: dict[str, Any] | None = None) -> Refused:
    return Refused(Refusal(status_code=403, detail=detail, reason=reason, extra=extra))
