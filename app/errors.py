"""Error bodies: every error is JSON `{"status_code", "detail", "extra"}`; a 500 never says more than that."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import HTTPScope

from app.http.inputs import unparsed_path_param

log = structlog.get_logger("pylon.errors")


class ErrorResponse(msgspec.Struct, kw_only=True):
    """Every error outside the /v1 routes: the status again, what is wrong, and Litestar's `extra`
    (for a refused input, `[{"message", "key", "source"}]` naming the field)."""

    status_code: int
    detail: str
    extra: list[Any] | dict[str, Any] | None = None


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, NotFoundException) and isinstance(exc.__cause__, ValueError):
        # The router's own 404 for a path parameter that did not parse: name it (400).
        refused = unparsed_path_param(request.app.routes, request.scope["path"])
        if refused is not None:
            exc = refused.to_http(cast(HTTPScope, request.scope))
    body: dict[str, object] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers, media_type=MediaType.JSON)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log with the request id; the caller gets no internals.
    log.exception("unhandled_error", path=request.scope.get("path_template"), method=request.method)
    return Response(
        {"status_code": 500, "detail": "Internal Server Error"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {HTTPException: http_exception_handler, Exception: internal_error_handler}
