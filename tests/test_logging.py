"""Request ids (generated, echoed when sane, replaced when not, bound in log lines) and log hygiene."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from app.logging import build_formatter, configure_logging
from app.main import create_app
from app.settings import LoggingSettings
from tests.client import PylonTestClient

from .conftest import SettingsFactory, migrate

SECRET_TOKEN = "admin-token-that-must-not-leak"
DB_PASSWORD = "db-password-that-must-not-leak"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@get("/probe/log", sync_to_thread=False, opt={"open": "test route"})
def probe_log() -> dict[str, str]:
    structlog.get_logger("tests.probe").info("probe_handled", answer=42)
    logging.getLogger("tests.stdlib").warning("stdlib record from %s", "a library")
    return {"ok": "yes"}


@get("/probe/leak", sync_to_thread=False, opt={"open": "test route"})
def probe_leak() -> None:
    # A library error that carries a secret in its message (a URL with credentials, an echoed header).
    raise RuntimeError(
        f"upstream refused postgresql://pylon:{DB_PASSWORD}@db/pylon with token {SECRET_TOKEN}"
    )


async def build_app(settings_factory: SettingsFactory, **env: str) -> Litestar:
    settings = settings_factory(
        PYLON_LOG_FORMAT="json", PYLON_LOG_LEVEL="INFO", PYLON_ADMIN_TOKEN=SECRET_TOKEN, **env
    )
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    app.litestar.register(probe_log)
    app.litestar.register(probe_leak)
    return app


@pytest.fixture
async def app(settings_factory: SettingsFactory) -> Litestar:
    return await build_app(settings_factory)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient]:
    async with PylonTestClient(app=app) as test_client:
        yield test_client


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_request_id_is_generated(client: AsyncTestClient) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert GENERATED_ID.fullmatch(first)
    assert first != second


@pytest.mark.parametrize(
    "incoming", ["abc-123", "0f4f358b-37ae-4c09-a2f1-7e92b6c2c7fb", "trace:span/1=x+y@z"]
)
async def test_a_sane_incoming_id_is_echoed(client: AsyncTestClient, incoming: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["x" * 129, "two words", "line\\nbreak", "<script>", '{"json": 1}', "caf\u00e9", "[red]markup[/red]"],
)
async def test_an_insane_incoming_id_is_replaced(client: AsyncTestClient, incoming: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming.encode("latin-1")})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_an_empty_incoming_id_is_replaced(client: AsyncTestClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": ""})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_unmatched_routes_get_a_request_id_too(client: AsyncTestClient) -> None:
    """404 and 405 are answered before Litestar's middlewares; the id is added outside them."""
    not_found = await client.get("/no/such/route", headers={"X-Request-ID": "lost-1"})
    assert not_found.status_code == 404
    assert not_found.headers["x-request-id"] == "lost-1"
    wrong_method = await client.delete("/health")
    assert wrong_method.status_code == 405
    assert GENERATED_ID.fullmatch(wrong_method.headers["x-request-id"])


async def test_the_request_id_is_bound_in_log_lines(
    capsys: pytest.CaptureFixture[str], client: AsyncTestClient
) -> None:
    capsys.readouterr()
    response = await client.get("/probe/log", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    lines = json_lines(capsys.readouterr().err)
    ours = [line for line in lines if line.get("event") == "probe_handled"]
    assert ours == [
        {
            "event": "probe_handled",
            "answer": 42,
            "request_id": "req-42",
            "level": "info",
            "logger": "tests.probe",
            "timestamp": ours[0]["timestamp"],
        }
    ]
    # Records from stdlib logging go through the same JSON formatter with the same request id.
    stdlib = [line for line in lines if line.get("logger") == "tests.stdlib"]
    assert stdlib[0]["event"] == "stdlib record from a library"
    assert stdlib[0]["request_id"] == "req-42"
    assert stdlib[0]["level"] == "warning"


async def test_the_request_id_does_not_leak_into_the_next_request(
    capsys: pytest.CaptureFixture[str], client: AsyncTestClient
) -> None:
    await client.get("/probe/log", headers={"X-Request-ID": "first"})
    capsys.readouterr()
    structlog.get_logger("tests.probe").info("between_requests")
    line = next(line for line in json_lines(capsys.readouterr().err) if line["event"] == "between_requests")
    assert "request_id" not in line


@pytest.mark.postgres
async def test_secrets_never_reach_the_logs(
    capsys: pytest.CaptureFixture[str], settings_factory: SettingsFactory, postgres_url: str
) -> None:
    # The test server trusts every local connection, so any password works; it only has to be configured.
    url = postgres_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in url
    app = await build_app(settings_factory, PYLON_DB_URL=url)
    capsys.readouterr()
    async with PylonTestClient(app=app) as client:
        assert (await client.get("/ready")).json()["checks"]["database"]["status"] == "ok"
        response = await client.get("/probe/leak", headers={"X-Request-ID": "leak-1"})
    assert response.status_code == 500
    assert SECRET_TOKEN not in response.text
    err = capsys.readouterr().err
    assert SECRET_TOKEN not in err
    assert DB_PASSWORD not in err
    (line,) = [line for line in json_lines(err) if line["event"] == "unhandled_error"]
    assert line["request_id"] == "leak-1"
    assert line["path"] == "/probe/leak"
    # The traceback is there, with the secrets blanked out.
    assert (
        "RuntimeError: upstream refused postgresql://pylon:***@db/pylon with token ***" in line["exception"]
    )


def test_redaction_covers_stdlib_records_and_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("json", "console"):
        configure_logging(LoggingSettings(level="INFO", format=fmt), redact=[SECRET_TOKEN])
        logging.getLogger("tests.lib").warning("header was Bearer %s", SECRET_TOKEN)
        structlog.get_logger("tests.own").info("nested", data={"token": [SECRET_TOKEN]})
        err = capsys.readouterr().err
        assert SECRET_TOKEN not in err
        assert "Bearer ***" in err


def test_alembic_dialect_chatter_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="INFO", format="json"))
    migration_logger = logging.getLogger("alembic.runtime.migration")
    migration_logger.info("Context impl SQLiteImpl.")
    migration_logger.info("Will assume non-transactional DDL.")
    migration_logger.info("Running upgrade  -> 0001, initial")
    events = [line["event"] for line in json_lines(capsys.readouterr().err)]
    assert events == ["Running upgrade  -> 0001, initial"]


def test_console_format_prints_tracebacks_without_locals() -> None:
    formatter = build_formatter("console")
    try:
        hidden_local = "local-value-not-for-logs"  # noqa: F841
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info()
        )
    text = formatter.format(record)
    assert "ValueError: boom" in text
    assert "local-value-not-for-logs" not in text


async def test_db_echo_logs_statements_once_through_the_formatter(
    capsys: pytest.CaptureFixture[str], settings_factory: SettingsFactory
) -> None:
    from sqlalchemy import text

    from app.db import create_engine

    settings = settings_factory(PYLON_DB_ECHO="true", PYLON_LOG_FORMAT="json", PYLON_LOG_LEVEL="INFO")
    configure_logging(settings.logging)
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 4242"))
    finally:
        await engine.dispose()
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    captured = capsys.readouterr()
    assert "SELECT 4242" not in captured.out  # SQLAlchemy's own stdout handler stays off
    statements = [line for line in json_lines(captured.err) if line["event"] == "SELECT 4242"]
    assert len(statements) == 1
    assert statements[0]["logger"].startswith("sqlalchemy.engine")
