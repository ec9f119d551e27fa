"""The CLI alone (no development node): its local commands simulate their own copy; hints fit the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.cli.test_cli import cli_env
from tests.conftest import free_port

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The test env file, a private data dir, and a node port where nothing listens."""
    return {**cli_env(tmp_path), "PYLON_LOCAL_NODE": "true", "PYLON_LOCAL_NODE_PORT": str(free_port())}


def test_chain_head_alone_simulates_its_own_copy(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["chain", "head", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["number"] == 1000
    assert "using the development chain" not in result.stderr


def test_wallet_create_prints_the_hotkey_and_keeps_an_existing_one(tmp_path: Path) -> None:
    from scalecodec.utils.ss58 import ss58_decode

    args = ["wallet", "create", "--name", "miner", "--hotkey", "hk", "--path", str(tmp_path), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    made = json.loads(first.stdout)
    assert made["created"] is True and ss58_decode(made["hotkey_ss58"])
    assert (tmp_path / "miner" / "hotkeys" / "hk").is_file()
    again = runner.invoke(app, args)
    assert json.loads(again.stdout) == {**made, "created": False}
    plain = runner.invoke(app, args[:-1])
    assert plain.stdout.strip() == made["hotkey_ss58"]
    assert "pylon localnet register" in plain.stderr


def test_post_ip_hint_on_the_development_chain_names_localnet_register(
    env: dict[str, str], tmp_path: Path
) -> None:
    created = runner.invoke(app, ["wallet", "create", "--name", "m", "--path", str(tmp_path), "--json"])
    hotkey = json.loads(created.stdout)["hotkey_ss58"]
    args = ["post-ip", "--ip", "1.2.3.4", "--port", "8091", "--yes", "--wallet-name", "m"]
    result = runner.invoke(app, [*args, "--wallet-path", str(tmp_path)], env=env)
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"pylon localnet register {hotkey}" in message and "btcli" not in message


def test_localnet_register_without_a_node_is_a_clear_error(env: dict[str, str]) -> None:
    hotkey = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
    result = runner.invoke(app, ["localnet", "register", hotkey], env=env)
    assert result.exit_code == 1
    assert "no development chain at ws://127.0.0.1:" in " ".join(result.output.split())
    bad = runner.invoke(app, ["localnet", "register", "not-an-address"], env=env)
    assert bad.exit_code == 2
