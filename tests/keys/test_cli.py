"""`pylon keys ...` end to end on SQLite and PostgreSQL: the CLI writes the database, the app honours it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from app.main import create_app
from app.settings import Settings
from cli.main import app as cli_app
from tests.client import PylonTestClient
from tests.conftest import PROJECT_ROOT, migrate
from tests.keys.helpers import bearer


@pytest.fixture(params=["sqlite", "postgres"])
def cli_env(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    env = {
        "PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(tmp_path / "data"),
    }
    if request.param == "postgres":
        env["PYLON_DB_URL"] = request.getfixturevalue("postgres_url")
    return env


def settings_of(env: dict[str, str]) -> Settings:
    from app.settings import load_settings

    return load_settings(env)


def pylon(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli_app, list(args), env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.stdout


async def call(settings: Settings, path: str, token: str, times: int = 1) -> list[int]:
    async with PylonTestClient(app=create_app(settings)) as client:
        return [(await client.get(path, headers=bearer(token))).status_code for _ in range(times)]


def test_keys_cli_end_to_end(cli_env: dict[str, str]) -> None:
    settings = settings_of(cli_env)
    migrate(settings)
    secret = pylon(
        cli_env, "keys", "create", "--name", "ops", "--scope", "keys:admin", "--rpm", "100"
    ).strip()
    assert secret.startswith("pylon_") and "\n" not in secret
    created = json.loads(
        pylon(
            cli_env,
            "keys",
            "create",
            "--name",
            "metrics",
            "--scope",
            "metrics:read",
            "--netuid",
            "3",
            "--model",
            "m",
            "--tpm",
            "1000",
            "--expires",
            "30d",
            "--json",
        )
    )
    assert created["key"].startswith(f"pylon_{created['id']}_")
    assert created["netuids"] == [3] and created["models"] == ["m"] and created["expires_at"]

    listed = json.loads(pylon(cli_env, "keys", "list", "--json"))
    assert {k["name"] for k in listed} == {"ops", "metrics"}
    assert all("key" not in k for k in listed)
    table = pylon(cli_env, "keys", "list")
    assert created["id"] in table and "metrics:read" in table.replace("\n", "")

    assert asyncio.run(call(settings, "/metrics", created["key"], times=2)) == [200, 200]
    assert asyncio.run(call(settings, "/api/v1/keys", secret)) == [200]

    shown = json.loads(pylon(cli_env, "keys", "show", created["id"], "--json"))
    assert shown["status"] == "active" and shown["last_used_at"] is not None
    usage = json.loads(pylon(cli_env, "keys", "usage", created["id"], "--json"))
    assert usage["totals"]["requests"] == 2 and usage["days"][0]["requests"] == 2
    assert "total" in pylon(cli_env, "keys", "usage", created["id"])

    revoked = json.loads(pylon(cli_env, "keys", "revoke", created["id"], "--json"))
    assert revoked["status"] == "revoked"
    assert asyncio.run(call(settings, "/metrics", created["key"])) == [401]


def test_keys_cli_errors(cli_env: dict[str, str]) -> None:
    migrate(settings_of(cli_env))
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["keys", "show", "nope"], env=cli_env)
    assert missing.exit_code == 1 and "no key with id 'nope'" in missing.stderr
    bad_scope = runner.invoke(cli_app, ["keys", "create", "--name", "x", "--scope", "root"], env=cli_env)
    assert bad_scope.exit_code == 2 and "unknown root" in bad_scope.stderr
    bad_expiry = runner.invoke(
        cli_app, ["keys", "create", "--name", "x", "--scope", "inference", "--expires", "soon"], env=cli_env
    )
    assert bad_expiry.exit_code == 2 and "--expires" in bad_expiry.stderr
    base = ["keys", "create", "--name", "x", "--scope", "inference"]
    nobody = runner.invoke(cli_app, [*base, "--identity", "nobody"], env=cli_env)
    assert nobody.exit_code == 1 and "unknown identity 'nobody'" in nobody.stderr, nobody.output
    control = runner.invoke(
        cli_app, ["keys", "create", "--name", "a\x1bb", "--scope", "inference"], env=cli_env
    )
    assert control.exit_code == 2 and "name" in control.stderr, control.output
    assert json.loads(pylon(cli_env, "keys", "list", "--json")) == []
