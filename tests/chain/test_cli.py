"""`pylon chain head|neurons` on the simulated chain (the CLI calls the service, not the HTTP API)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"), "PYLON_DATA_DIR": str(tmp_path)}


def test_chain_head(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["chain", "head", "--json"], env=env)
    assert result.exit_code == 0, result.output
    block = json.loads(result.stdout)
    assert block["number"] >= 1000 and block["hash"].startswith("0x") and len(block["hash"]) == 66


def test_chain_neurons_json_is_the_api_body_and_table_lists_every_uid(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["chain", "neurons", "--netuid", "1", "--json"], env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"block", "neurons"} and len(body["neurons"]) == 256
    table = CliRunner().invoke(app, ["chain", "neurons"], env=env)
    assert table.exit_code == 0, table.output
    first = next(iter(body["neurons"].values()))
    assert first["hotkey"] in table.stdout
    assert "uid" in table.stdout and "incentive" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--netuid", "42"], "subnet 42 does not exist"), (["--block", "99999999"], "is in the future")],
)
def test_chain_neurons_errors_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["chain", "neurons", *args], env=env)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
