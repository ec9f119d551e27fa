"""`--help` shows flags as flags: no value type beside `--yes` or `--help` (typer 0.29 printed `<bool>`)."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from cli.main import app

WIDE = {"COLUMNS": "200"}


def _paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every group and command under `command`, as argument paths (itself first)."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(_paths(sub, (*path, name)))
    return paths


@pytest.mark.parametrize("args", [[], ["serve"], ["post-ip"]], ids=["pylon", "serve", "post-ip"])
def test_flags_show_no_value_type(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_no_command_shows_bool() -> None:
    runner = CliRunner()
    paths = _paths(typer.main.get_command(app))
    assert ("db", "upgrade") in paths and ("chain", "dump-metadata") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env=WIDE)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path


def test_a_flag_takes_no_value() -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["post-ip", "--help"], env=WIDE).output
    line = next(line for line in help_text.splitlines() if "--yes" in line)
    assert "-y" in line and "<" not in line
    # A value after a flag is an extra argument: a usage error.
    refused = runner.invoke(app, ["post-ip", "--ip", "1.2.3.4", "--port", "8091", "--yes", "true"])
    assert refused.exit_code == 2
