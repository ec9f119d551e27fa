"""Settings: each kind of wrong value names its variable; env files; the environment wins; secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import (
    DevChainSettings,
    SettingsError,
    env_names,
    load_settings,
    mask_url,
    masked,
    parse_env_file,
    secret_values,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PYLON_PORT", "abc", "expected an integer, got 'abc'"),
        ("PYLON_PORT", "0", "expected a port from 1 to 65535"),
        ("PYLON_PORT", "70000", "expected a port from 1 to 65535"),
        ("PYLON_WORKERS", "0", "expected at least 1"),
        ("PYLON_MAX_BODY_SIZE", "1.5", "expected an integer"),
        ("PYLON_DB_ECHO", "maybe", "expected true or false"),
        ("PYLON_DB_POOL_SIZE", "ten", "expected an integer"),
        ("PYLON_LOG_LEVEL", "LOUD", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("PYLON_LOG_FORMAT", "xml", "expected one of auto, json, console"),
        ("PYLON_LOCAL_NETUIDS", "1,x", "expected a comma-separated or JSON list of integers"),
        ("PYLON_LOCAL_NETUIDS", "[1,", "not valid JSON"),
        ("PYLON_LOCAL_BLOCK_TIME", "-1", "expected seconds above 0"),
        ("PYLON_CALL_TIMEOUT", "soon", "expected a number"),
        ("PYLON_NETUID", "-3", "expected a netuid of 0 or more"),
        (
            "PYLON_DB_URL",
            "mysql://root@db/pylon",
            "expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL",
        ),
    ],
)
def test_a_wrong_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: "), message
    assert expected in message


def test_values_are_converted_to_their_types() -> None:
    settings = load_settings(
        {
            "PYLON_PORT": "9000",
            "PYLON_DB_ECHO": "true",
            "PYLON_LOCAL_NETUIDS": "1, 2,3",
            "PYLON_LOCAL_BLOCK_TIME": "0.5",
            "PYLON_LOG_LEVEL": "debug",  # levels are case-insensitive
            "PYLON_APP_NAME": "edge",
        }
    )
    assert settings.server.port == 9000
    assert settings.db.echo is True
    assert settings.devchain.netuids == [1, 2, 3]
    assert settings.devchain.block_time == 0.5
    assert settings.logging.level == "DEBUG"
    assert settings.app_name == "edge"
    assert load_settings({"PYLON_LOCAL_NETUIDS": "[4, 5]"}).devchain.netuids == [4, 5]


def test_defaults_need_no_environment(tmp_path: Path) -> None:
    settings = load_settings({"PYLON_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'pylon.sqlite3'}"
    assert settings.server.port == 8000
    assert settings.auth.metrics_token == ""


def test_env_file_parsing(tmp_path: Path) -> None:
    env_file = tmp_path / "pylon.env"
    env_file.write_text(
        "# a comment\n"
        "\n"
        "PYLON_PORT=9100\n"
        "export PYLON_APP_NAME=exported\n"
        "PYLON_ADMIN_TOKEN='quoted value # not a comment'\n"
        'PYLON_METRICS_TOKEN="double=quoted"\n'
        "  PYLON_LOG_LEVEL = WARNING  \n"
    )
    assert parse_env_file(env_file) == {
        "PYLON_PORT": "9100",
        "PYLON_APP_NAME": "exported",
        "PYLON_ADMIN_TOKEN": "quoted value # not a comment",
        "PYLON_METRICS_TOKEN": "double=quoted",
        "PYLON_LOG_LEVEL": "WARNING",
    }
    settings = load_settings({}, env_file=str(env_file))
    assert settings.server.port == 9100
    assert settings.auth.metrics_token == "double=quoted"


def test_a_malformed_env_file_line_names_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("PYLON_PORT=1\nthis is not an assignment\n")
    with pytest.raises(SettingsError, match=r"bad\.env:2: expected KEY=VALUE"):
        load_settings({}, env_file=str(env_file))


def test_a_missing_env_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^PYLON_ENV_FILE: cannot read env file .*missing\.env"):
        load_settings({"PYLON_ENV_FILE": str(tmp_path / "missing.env")})


def test_a_wrong_value_in_the_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "pylon.env"
    env_file.write_text("PYLON_WORKERS=many\n")
    with pytest.raises(SettingsError, match=r"^PYLON_WORKERS: expected an integer, got 'many'"):
        load_settings({"PYLON_ENV_FILE": str(env_file)})


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "pylon.env"
    env_file.write_text("PYLON_PORT=9100\nPYLON_APP_NAME=from-file\n")
    settings = load_settings({"PYLON_ENV_FILE": str(env_file), "PYLON_PORT": "9200"})
    assert settings.server.port == 9200
    assert settings.app_name == "from-file"
    # An explicit env_file argument (`--env-file`) beats PYLON_ENV_FILE.
    other = tmp_path / "other.env"
    other.write_text("PYLON_APP_NAME=from-other\n")
    assert load_settings({"PYLON_ENV_FILE": str(env_file)}, env_file=str(other)).app_name == "from-other"


@pytest.mark.parametrize(
    ("name", "network", "database"),
    [
        ("dev.env", "local", "sqlite+aiosqlite://"),
        ("test.env", "local", "sqlite+aiosqlite://"),
        ("prod.env.example", "finney", "postgresql+asyncpg://"),
    ],
)
def test_shipped_env_files_load(name: str, network: str, database: str) -> None:
    settings = load_settings({}, env_file=str(PROJECT_ROOT / "envs" / name))
    assert settings.chain.network == network
    assert settings.database_url.startswith(database)


def test_prod_example_documents_every_variable() -> None:
    """Every variable Pylon reads appears in envs/prod.env.example, each under a comment."""
    lines = (PROJECT_ROOT / "envs" / "prod.env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    # Optional variables may be shown commented out (`# PYLON_X=...`), where empty is not a value.
    documented |= {line[2:].split("=", 1)[0] for line in lines if line.startswith("# PYLON_") and "=" in line}
    text = "\n".join(lines)
    # Per-identity variables are a pattern; their prose lists each suffix.
    patterns = {name for name in env_names() if "<NAME>" in name}
    assert all(name.rsplit("<NAME>", 1)[1] in text for name in patterns)
    assert set(env_names()) - documented - patterns == set()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = lines[:index]
            # The nearest non-assignment line above is a comment (groups of related variables share one).
            nearest = next(text for text in reversed(above) if "=" not in text or text.startswith("#"))
            assert nearest.startswith("#"), f"{line} has no comment above it"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://pylon:hunter22@db:5432/pylon", "postgresql+asyncpg://pylon:***@db:5432/pylon"),
        # An unencoded `@` or `:` in the password does not leak its tail.
        ("postgresql+asyncpg://pylon:p@ss:w0rd@db/pylon", "postgresql+asyncpg://pylon:***@db/pylon"),
        ("postgresql+asyncpg://pylon@db/pylon", "postgresql+asyncpg://pylon@db/pylon"),
        (
            "postgresql+asyncpg://db/pylon?user=u&password=hunter22",
            "postgresql+asyncpg://db/pylon?user=u&password=***",
        ),
        (
            "sqlite+aiosqlite:////var/lib/pylon/pylon.sqlite3",
            "sqlite+aiosqlite:////var/lib/pylon/pylon.sqlite3",
        ),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_masked_hides_tokens_and_the_database_password() -> None:
    settings = load_settings(
        {
            "PYLON_ADMIN_TOKEN": "admin-secret-1",
            "PYLON_METRICS_TOKEN": "metrics-secret-2",
            "PYLON_DB_URL": "postgresql+asyncpg://pylon:db-secret-3@db/pylon",
        }
    )
    shown = masked(settings)
    assert shown["auth"] == {"admin_token": "***", "metrics_token": "***", "open_access_token": ""}
    assert shown["db"]["url"] == "postgresql+asyncpg://pylon:***@db/pylon"
    assert shown["database_url"] == "postgresql+asyncpg://pylon:***@db/pylon"
    for secret in ("admin-secret-1", "metrics-secret-2", "db-secret-3"):
        assert secret not in repr(shown)
    assert secret_values(settings) == ["admin-secret-1", "db-secret-3", "metrics-secret-2"]


def test_masked_leaves_unset_secrets_visible_as_empty() -> None:
    # An empty token is not a secret, and seeing "" tells the operator /metrics is off.
    assert masked(load_settings({}))["auth"] == {
        "admin_token": "",
        "metrics_token": "",
        "open_access_token": "",
    }


def test_a_wrong_database_url_is_reported_masked() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PYLON_DB_URL": "mysql://root:hunter22@db/pylon"})
    assert "hunter22" not in str(caught.value)
    assert "mysql://root:***@db/pylon" in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


def test_dev_chain_section_reads_the_pylon_local_variables() -> None:
    settings = load_settings(
        {
            "PYLON_LOCAL_BLOCK_TIME": "2",
            "PYLON_LOCAL_NETUIDS": "2,5",
            "PYLON_LOCAL_NEURONS": "32",
            "PYLON_LOCAL_SEED": "9",
            "PYLON_LOCAL_TEMPO": "99",
            "PYLON_LOCAL_WEIGHTS_RATE_LIMIT": "4",
            "PYLON_LOCAL_COMMIT_REVEAL": "true",
            "PYLON_LOCAL_VALIDATORS": "5A,5B",
            "PYLON_LOCAL_UNREACHABLE": "true",
        }
    )
    assert settings.devchain == DevChainSettings(
        block_time=2.0,
        netuids=[2, 5],
        neurons=32,
        seed=9,
        tempo=99,
        weights_rate_limit=4,
        commit_reveal=True,
        validators=["5A", "5B"],
        unreachable=True,
    )
    assert {f"PYLON_LOCAL_{name.upper()}" for name in DevChainSettings.__struct_fields__} <= set(env_names())
    with pytest.raises(SettingsError, match=r"^PYLON_LOCAL_TEMPO: expected at least 1 block, got 0$"):
        load_settings({"PYLON_LOCAL_TEMPO": "0"})
