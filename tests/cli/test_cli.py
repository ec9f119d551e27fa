"""The `pylon` CLI through Typer's CliRunner: version, config show, db migrations, error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import __version__
from app.db import head_revision
from cli.main import app

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def cli_env(tmp_path: Path) -> dict[str, str]:
    """A private data dir and the test env file; other PYLON_* variables of the caller are masked out."""
    variables = {name: "" for name in os.environ if name.startswith("PYLON_")}
    return {
        **variables,
        "PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def clean(env: dict[str, str]) -> dict[str, str]:
    """For a subprocess: drop the masked (empty) variables instead of passing them empty."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYLON_")},
        **{k: v for k, v in env.items() if v},
    }


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    # Typer exits 2 on missing command but still prints the usage.
    assert "serve" in result.output and "db" in result.output and "config" in result.output


def test_config_show_masks_secrets(runner: CliRunner, env: dict[str, str]) -> None:
    env |= {
        "PYLON_ADMIN_TOKEN": "admin-secret-value",
        "PYLON_METRICS_TOKEN": "metrics-secret-value",
        "PYLON_DB_URL": "postgresql+asyncpg://pylon:db-secret-value@db.internal:5432/pylon",
    }
    result = runner.invoke(app, ["config", "show"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["auth"] == {"admin_token": "***", "metrics_token": "***", "open_access_token": ""}
    assert shown["database_url"] == "postgresql+asyncpg://pylon:***@db.internal:5432/pylon"
    assert shown["chain"]["network"] == "local"
    for secret in ("admin-secret-value", "metrics-secret-value", "db-secret-value"):
        assert secret not in result.output


def test_config_show_reads_the_env_file_option(
    runner: CliRunner, env: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("PYLON_APP_NAME=from-option\nPYLON_PORT=9001\n")
    env |= {"PYLON_PORT": "9002"}
    result = runner.invoke(app, ["config", "show", "--env-file", str(env_file)], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["app_name"] == "from-option"
    assert shown["server"]["port"] == 9002  # the environment wins over the file


def test_db_upgrade_current_downgrade(runner: CliRunner, env: dict[str, str]) -> None:
    head = head_revision()
    before = runner.invoke(app, ["db", "current"], env=env)
    assert before.exit_code == 0, before.output
    assert before.stdout.strip() == "none (no migration applied)"

    upgraded = runner.invoke(app, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert f"database upgraded to {head} (head)" in upgraded.stderr
    assert upgraded.stdout == ""  # messages go to stderr; stdout is for data

    current = runner.invoke(app, ["db", "current"], env=env)
    assert current.stdout.strip() == f"{head} (head)"

    downgraded = runner.invoke(app, ["db", "downgrade", "base"], env=env)
    assert downgraded.exit_code == 0, downgraded.output
    assert "database downgraded to none" in downgraded.stderr
    assert runner.invoke(app, ["db", "current"], env=env).stdout.strip() == "none (no migration applied)"


@pytest.mark.postgres
def test_db_commands_on_postgres(runner: CliRunner, env: dict[str, str], postgres_url: str) -> None:
    env |= {"PYLON_DB_URL": postgres_url}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["db", "current"], env=env).stdout.strip() == f"{head_revision()} (head)"
    assert runner.invoke(app, ["db", "downgrade", "base"], env=env).exit_code == 0
    assert runner.invoke(app, ["db", "current"], env=env).stdout.strip().startswith("none")


@pytest.mark.parametrize(
    ("args", "variable", "value", "message"),
    [
        (["config", "show"], "PYLON_PORT", "abc", "error: PYLON_PORT: expected an integer, got 'abc'"),
        (["db", "current"], "PYLON_LOG_LEVEL", "LOUD", "error: PYLON_LOG_LEVEL: expected one of DEBUG"),
        (["serve"], "PYLON_WORKERS", "0", "error: PYLON_WORKERS: expected at least 1, got 0"),
        (["db", "upgrade"], "PYLON_DB_URL", "mysql://u:pw-secret@h/db", "error: PYLON_DB_URL: expected a"),
    ],
)
def test_a_settings_error_is_one_line_and_exit_1(
    runner: CliRunner, env: dict[str, str], args: list[str], variable: str, value: str, message: str
) -> None:
    result = runner.invoke(app, args, env=env | {variable: value})
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)
    assert "Traceback" not in result.stderr
    assert "pw-secret" not in result.stderr


def test_a_missing_env_file_is_one_line(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "show", "--env-file", str(tmp_path / "nope.env")], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: PYLON_ENV_FILE: cannot read env file")
    assert len(result.stderr.splitlines()) == 1


def test_an_unexpected_error_is_one_line_without_secrets(runner: CliRunner, env: dict[str, str]) -> None:
    # Nothing listens on port 1: the connection fails inside SQLAlchemy, deep in a library.
    env |= {"PYLON_DB_URL": "postgresql+asyncpg://pylon:pw-secret@127.0.0.1:1/pylon"}
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "--debug" in lines[0]
    assert "pw-secret" not in result.stderr


def test_debug_raises_the_original_exception(runner: CliRunner, env: dict[str, str]) -> None:
    from app.settings import SettingsError

    result = runner.invoke(app, ["--debug", "config", "show"], env=env | {"PYLON_PORT": "abc"})
    assert result.exit_code == 1
    assert isinstance(result.exception, SettingsError)
    # And without --debug again, the next command is back to one line (the flag does not stick).
    again = runner.invoke(app, ["config", "show"], env=env | {"PYLON_PORT": "abc"})
    assert again.exit_code == 1 and again.exception is not None and isinstance(again.exception, SystemExit)


def test_debug_prints_a_traceback_in_a_real_process(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "cli.main"]
    process_env = clean(env | {"PYLON_PORT": "abc"})
    run = {"env": process_env, "cwd": PROJECT_ROOT, "capture_output": True, "text": True, "timeout": 60}
    plain = subprocess.run([*command, "config", "show"], check=False, **run)  # type: ignore[call-overload]
    assert plain.returncode == 1
    assert plain.stderr.strip() == "error: PYLON_PORT: expected an integer, got 'abc'"
    debug = subprocess.run([*command, "--debug", "config", "show"], check=False, **run)  # type: ignore[call-overload]
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "SettingsError" in debug.stderr


def test_usage_errors_exit_2(runner: CliRunner) -> None:
    assert runner.invoke(app, ["db", "upgrade", "--no-such-option"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_db_revision_writes_a_lint_clean_migration(
    runner: CliRunner, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from app import db as app_db

    # A copy of the migrations, so the test never writes into the source tree.
    scripts = tmp_path / "alembic"
    shutil.copytree(PROJECT_ROOT / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(app_db, "MIGRATIONS_DIR", scripts)
    head = head_revision()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0

    result = runner.invoke(app, ["db", "revision", "-m", "probe change", "--rev-id", "9999"], env=env)
    assert result.exit_code == 0, result.output
    (path,) = (scripts / "versions").glob("*_9999_probe_change.py")
    text = path.read_text()
    assert 'revision = "9999"' in text
    assert f'down_revision = "{head}"' in text
    config = str(PROJECT_ROOT / "pyproject.toml")
    for check in (["check"], ["format", "--check"]):
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", *check, "--config", config, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
