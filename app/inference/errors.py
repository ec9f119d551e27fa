"""Errors on the /v1 routes speak OpenAI's format, `{"error": {"message", "type", "code", "param"}}`.

The official SDKs turn the status into their exception types (`BadRequestError`, `NotFoundError`, ...)
and read `error.message`; the rest of Pylon keeps `{"status_code", "detail", "extra"}`. The handlers here
are attached to the inference router only, so they also reshape Litestar's own errors raised on these
routes (the auth guard's 401/403, the body-size 413).
"""

from __future__ import annotations

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from app.inference.schemas import ErrorBody, ErrorDetail

log = structlog.get_logger(__name__)

# OpenAI's `type` for each status; the SDKs key on the status, humans read the type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class InferenceError(Exception):
    """An error answered in OpenAI's format."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(status_code: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
    detail = ErrorDetail(
        message=message, type=ERROR_TYPES.get(status_code, "api_error"), code=code, param=param
    )
    return msgspec.json.encode(ErrorBody(error=detail))


def error_response(
    status_code: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    return Response(
        error_body(status_code, message, code, param),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def inference_error_handler(request: Request, exc: InferenceError) -> Response[bytes]:
    return error_response(exc.status_code, exc.message, exc.code, exc.param, exc.headers)


def http_exception_handler(request: Request, exc: HTTPException) -> Response[bytes]:
    codes = {
        401: "invalid_api_key",
        403: "permission_denied",
        413: "request_too_large",
        429: "rate_limit_exceeded",
    }
    return error_response(
        exc.status_code,
        str(exc.detail),
        codes.get(exc.status_code),
        headers=dict(exc.headers) if exc.headers else None,
    )


def internal_error_handler(request: Request, exc: Exception) -> Response[bytes]:
    log.exception("inference_unhandled_error", path=request.scope.get("path_template"))
    return error_response(500, "internal server error", "internal_error")


EXCEPTION_HANDLERS = {
    InferenceError: inference_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
