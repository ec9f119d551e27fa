"""structlog for Pylon's own events; stdlib, granian and SQLAlchemy logs go through the same formatter."""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

import structlog
from litestar.types import Scope
from structlog.typing import EventDict

from app.settings import LoggingSettings

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
# The request being served, read by `add_request_id` when (and only when) a line is logged: one ContextVar
# set per request is much cheaper than binding structlog's contextvars.
_request_id: ContextVar[str | None] = ContextVar("pylon_request_id", default=None)
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_MIN_REDACTED_LENGTH = 4
_ALEMBIC_PLUGINS = "alembic.runtime.plugins"


def add_request_id(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """Put the current request's id on the line (explicitly bound values win)."""
    request_id = _request_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_request_id,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _use_json(fmt: str) -> bool:
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


class Redactor:
    """Replace known secret values (tokens, the database password) wherever they appear in an event.

    A last line of defence: code must not log secrets, but an exception message or a library's record may
    carry one (a URL with credentials, a header echoed back), and tracebacks are rendered before this runs.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Very short values would blank out ordinary words and numbers all over the log.
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_REDACTED_LENGTH}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self._walk(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item) for item in value]
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: EventDict) -> EventDict:
        if not self.secrets:
            return event_dict
        return {key: self._walk(value) for key, value in event_dict.items()}


def build_formatter(fmt: str = "auto", redact: Iterable[str] = ()) -> logging.Formatter:
    """The one formatter for structlog events and stdlib records alike."""
    renderer: Any
    if _use_json(fmt):
        renderer = structlog.processors.JSONRenderer()
    else:
        # Tracebacks as plain text: rich's default shows local variables, which may hold secrets.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            Redactor(redact),
            renderer,
        ],
    )


class _DropAlembicChatter(logging.Filter):
    """alembic says which dialect it picked at INFO on every run; keep its "Running upgrade" lines only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Context impl ", "Will assume "))


def granian_log_config(settings: LoggingSettings, redact: Iterable[str] = ()) -> dict[str, Any]:
    """granian's dictConfig for its own process, sending its records through Pylon's formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "pylon": {"()": "app.logging.build_formatter", "fmt": settings.format, "redact": list(redact)}
        },
        "handlers": {
            "pylon": {"class": "logging.StreamHandler", "formatter": "pylon", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["pylon"], "level": settings.level},
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
            # Spawned (--reload) workers import alembic after this config is applied.
            _ALEMBIC_PLUGINS: {"level": "WARNING"},
        },
    }


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record arrives, not when logging was configured
    (test runners swap it per test; a handler holding an old, closed stream would lose every line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(settings: LoggingSettings, redact: Iterable[str] = ()) -> None:
    """Set up structlog and the stdlib root logger; safe to call again (each granian worker calls it).

    `redact`: secret values to blank out of every line (`app.settings.secret_values(settings)`).
    """
    handler = StderrHandler()
    handler.setFormatter(build_formatter(settings.format, redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("granian", "granian.access", "_granian", "sqlalchemy", "alembic", "litestar"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # alembic announces each of its autogenerate plugins at INFO on import.
    logging.getLogger(_ALEMBIC_PLUGINS).setLevel(logging.WARNING)
    migration_logger = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _DropAlembicChatter) for f in migration_logger.filters):
        migration_logger.addFilter(_DropAlembicChatter())
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
            # Accept a caller's id only if it is short and made of id-like characters, so it cannot forge
            # log lines, smuggle markup into a console, or bloat every line it is bound to.
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            return None
    return None


def _id_generator() -> Iterable[str]:
    """32 hex digits: a random per-process prefix and a counter (unique across workers, no syscall or
    UUID object per request, which uuid4() costs)."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{n:016x}" for n in itertools.count())


class RequestIds:
    """The request id of each request: the caller's `X-Request-ID` when sane, else a new one.

    Built in the worker that serves (granian forks workers after importing this module), so each worker
    has its own random prefix.
    """

    HEADER = _REQUEST_ID_HEADER_BYTES

    def __init__(self) -> None:
        self._new = iter(_id_generator())

    def of(self, scope: Scope) -> str:
        return _incoming_request_id(scope) or next(self._new)

    @staticmethod
    def bind(request_id: str) -> Token[str | None]:
        """Make log lines written from here on (in this task) carry `request_id`; undo with `unbind`."""
        return _request_id.set(request_id)

    @staticmethod
    def unbind(token: Token[str | None]) -> None:
        _request_id.reset(token)
