"""Which headers cross the proxy, each way (RFC 9110 §7.6.1 hop-by-hop headers, the caller's credentials).

Requests keep the caller's end-to-end headers but lose its credentials (`Authorization`, `X-API-Key`,
`Epistula-*`: the upstream must not be able to replay them) and any `X-Pylon-*` it sent (only Pylon may
say who the caller is); Pylon adds who it verified and `X-Forwarded-*`. Answers keep everything the upstream
sent but the hop-by-hop headers. Names are ASGI's: lower-case bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.auth.context import Principal

# RFC 9110 §7.6.1 and RFC 9112: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The caller's credentials and routing headers the proxy sets itself.
_NOT_FORWARDED = frozenset({b"authorization", b"x-api-key", b"host", b"x-request-id"})
_STRIPPED_PREFIXES = (b"epistula-", b"x-pylon-", b"proxy-")

H_CALLER = "X-Pylon-Caller"
H_HOTKEY = "X-Pylon-Hotkey"
H_KEY_ID = "X-Pylon-Key-Id"

Headers = Iterable[tuple[bytes, bytes]]


def _connection_named(headers: Headers) -> frozenset[bytes]:
    """Headers the sender listed in `Connection` (they are hop-by-hop too)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(named)


def end_to_end(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The headers without hop-by-hop ones (fixed list and those named in `Connection`)."""
    headers = list(headers)
    dropped = HOP_BY_HOP | _connection_named(headers)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def request_headers(
    headers: Headers,
    caller: Principal | None,
    *,
    client_ip: str | None,
    scheme: str,
    request_id: str,
) -> list[tuple[str, str]]:
    """The headers sent upstream: the caller's end-to-end ones minus credentials, plus who the caller is."""
    out: list[tuple[str, str]] = []
    forwarded_for = ""
    host = ""
    for name, value in end_to_end(headers):
        lower = name.lower()
        if lower == b"host":
            host = value.decode("latin-1")
        if lower in _NOT_FORWARDED or lower.startswith(_STRIPPED_PREFIXES):
            continue
        if lower == b"x-forwarded-for":
            forwarded_for = ", ".join(filter(None, (forwarded_for, value.decode("latin-1"))))
            continue
        if lower in (b"x-forwarded-proto", b"x-forwarded-host"):
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if client_ip:
        # Appended as nginx's $proxy_add_x_forwarded_for does: the last entry is the one Pylon saw.
        forwarded_for = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    if forwarded_for:
        out.append(("X-Forwarded-For", forwarded_for))
    out.append(("X-Forwarded-Proto", scheme))
    if host:
        out.append(("X-Forwarded-Host", host))
    out.append(("X-Request-ID", request_id))
    out.extend(caller_headers(caller))
    return out


def caller_headers(caller: Principal | None) -> list[tuple[str, str]]:
    """Who Pylon verified: the signer's hotkey for Epistula, the key id for API keys."""
    if caller is None:
        return []
    out: list[tuple[str, str]] = [(H_CALLER, caller.kind)]
    if caller.kind == "epistula":
        out.append((H_HOTKEY, caller.id))
    elif caller.kind == "api_key":
        out.append((H_KEY_ID, caller.id))
    return out


def response_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The upstream's answer headers as the caller gets them (lower-case names, as ASGI sends them)."""
    # The edge replaces any X-Request-ID with the request's own.
    return [(name.lower(), value) for name, value in end_to_end(headers)]
