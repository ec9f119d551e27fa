"""`pylon weights set|jobs|show` through the service, on the same database the server uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.settings import Settings
from cli.main import app


@pytest.fixture
def cli_env(
    weights_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    settings = weights_settings()
    monkeypatch.setenv("PYLON_DATA_DIR", settings.data_dir)
    monkeypatch.setenv("PYLON_NETWORK", "local")
    return tmp_path


def test_set_jobs_show(cli_env: Path) -> None:
    runner = CliRunner()
    weights_file = cli_env / "weights.json"
    weights_file.write_text(json.dumps({"weights": {"5Hotkey": 2.0, "5Other": 1}}))
    result = runner.invoke(app, ["weights", "set", "--netuid", "1", "--file", str(weights_file), "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["status"] == "pending" and created["count"] == 2 and created["identity"] == "default"
    assert created["detail"] == "weights update scheduled"

    listed = runner.invoke(app, ["weights", "jobs", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [job["id"] for job in json.loads(listed.stdout)["jobs"]] == [created["job_id"]]

    shown = runner.invoke(app, ["weights", "show", str(created["job_id"]), "--json"])
    assert json.loads(shown.stdout)["weights"] == {"5Hotkey": 2.0, "5Other": 1.0}
    human = runner.invoke(app, ["weights", "show", str(created["job_id"])])
    assert "5Hotkey" in human.stdout and "pending" in human.stdout
    table = runner.invoke(app, ["weights", "jobs"])
    assert "pending" in table.stdout


def test_cli_errors_are_one_line(cli_env: Path) -> None:
    runner = CliRunner()
    bad = cli_env / "bad.json"
    bad.write_text(json.dumps({"5Hotkey": -1}))
    result = runner.invoke(app, ["weights", "set", "--netuid", "1", "--file", str(bad)])
    assert result.exit_code == 1
    assert "must not be negative" in result.output
    missing = runner.invoke(app, ["weights", "show", "999"])
    assert missing.exit_code == 1 and "no weights job 999" in missing.output
    unknown = runner.invoke(
        app, ["weights", "set", "--netuid", "1", "--file", str(bad), "--identity", "zeta"]
    )
    assert unknown.exit_code == 1
