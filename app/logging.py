"""structlog for Pylon's own events, with stdlib, granian and SQLAlchemy logs routed through the same formatter."""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import LoggingSettings

REQUEST_ID_HEADER = "x-request-id"
_MAX_INCOMING_ID = 128
_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer(fmt: str) -> Any:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    if use_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer()


def build_formatter(fmt: str = "auto") -> logging.Formatter:
    """The one formatter for structlog events and stdlib records alike."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )


def granian_log_config(settings: LoggingSettings) -> dict[str, Any]:
    """granian's dictConfig for its own process, sending its records through Pylon's formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pylon": {"()": "app.logging.build_formatter", "fmt": settings.format}},
        "handlers": {"pylon": {"class": "logging.StreamHandler", "formatter": "pylon", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["pylon"], "level": settings.level},
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
        },
    }


def configure_logging(settings: LoggingSettings) -> None:
    """Set up structlog and the stdlib root logger; safe to call again (each granian worker calls it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(settings.format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("granian", "granian.access", "_granian", "sqlalchemy", "alembic", "litestar"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # SQLAlchemy's INFO is every statement; keep it at WARNING unless PYLON_DB_ECHO asks for more.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # httpx logs every URL at INFO; upstream URLs may carry credentials.
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)

    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.level)),
        cache_logger_on_first_use=True,
    )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # Accept a caller's id only if it is short and printable, so logs cannot be forged with it.
            if 0 < len(text) <= _MAX_INCOMING_ID and text.isprintable():
                return text
            return None
    return None


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id to every log line of the request and return it in `X-Request-ID`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # type: ignore[typeddict-item]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await app(scope, receive, send_with_id)

    return middleware
