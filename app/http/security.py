"""Browser edges: CORS (Litestar's CORSConfig, from `PYLON_CORS_*`) and the security headers every answer
carries. Litestar adds the headers to routed answers (`response_headers`); the edge adds any that are
missing (hot routes, the router's own 404s and 405s), so every answer has them. A route that sets its own
(the dashboard's stricter Content-Security-Policy) keeps its values."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import ResponseHeader

from app.settings import CorsSettings

# JSON APIs: no content sniffing, no referrer leaked to other origins, nothing to frame or run inline.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SECURITY_HEADER_PAIRS = tuple(
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
)


def response_headers() -> list[ResponseHeader]:
    return [ResponseHeader(name=name, value=value) for name, value in SECURITY_HEADERS.items()]


def cors_config(settings: CorsSettings) -> CORSConfig | None:
    """Litestar's CORS configuration, or None (no cross-origin caller) when no origin is allowed."""
    if not settings.allow_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.allow_origins),
        allow_methods=list(settings.allow_methods),  # type: ignore[arg-type]
        allow_headers=list(settings.allow_headers),
        allow_credentials=settings.allow_credentials,
        max_age=settings.max_age,
        expose_headers=["X-Request-ID", "Retry-After"],
    )


def missing_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The security headers an answer does not set itself."""
    present = {name.lower() for name, _ in headers}
    return [pair for pair in SECURITY_HEADER_PAIRS if pair[0] not in present]
