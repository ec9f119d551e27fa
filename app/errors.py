"""Error bodies: every error is JSON `{"status_code", "detail", "extra"}`; a 500 never says more than that."""

from __future__ import annotations

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = structlog.get_logger("pylon.errors")


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
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
