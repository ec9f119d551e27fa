"""One format for every bad value: `error: NAME: expected WHAT, got 'RAW'`, whether an option reads it or not.

From the command line it is a usage error (exit 2, named by the option); from the environment or an env
file it is a bad setting (exit 1, named by the variable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from cli.errors import PylonGroup, state
from cli.main import app

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The test env file and a private data dir; the caller's other PYLON_* variables are masked out."""
    return {
        **{name: "" for name in os.environ if name.startswith("PYLON_")},
        "PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(tmp_path / "data"),
    }


def one_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "variable", "value", "message"),
    [
        # Variables an option reads (Typer parses them)...
        (["serve"], "PYLON_PORT", "abc", "error: PYLON_PORT: expected an integer, got 'abc'"),
        (["chain", "head"], "PYLON_NETUID", "x", "error: PYLON_NETUID: expected an integer, got 'x'"),
        # ...and variables no option reads (the settings parse them): the same words, the same exit code.
        (["config", "show"], "PYLON_PORT", "abc", "error: PYLON_PORT: expected an integer, got 'abc'"),
        (
            ["config", "show"],
            "PYLON_METAGRAPH_CACHE_BLOCKS",
            "abc",
            "error: PYLON_METAGRAPH_CACHE_BLOCKS: expected an integer, got 'abc'",
        ),
    ],
)
def test_a_bad_variable_is_one_line_and_exit_1(
    env: dict[str, str], args: list[str], variable: str, value: str, message: str
) -> None:
    result = CliRunner().invoke(app, args, env=env | {variable: value})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert one_line(result) == message


def test_a_bad_value_in_the_env_file_is_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("PYLON_PORT=abc\n")
    result = CliRunner().invoke(app, ["config", "show", "--env-file", str(env_file)], env=env)
    assert result.exit_code == 1
    assert one_line(result) == "error: PYLON_PORT: expected an integer, got 'abc'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "abc"], "error: --port: expected an integer, got 'abc'"),
        (["serve", "--port=abc"], "error: --port: expected an integer, got 'abc'"),
        (["keys", "usage", "1", "--days", "0"], "error: --days: expected an integer from 1 to 366, got '0'"),
        (
            ["weights", "jobs", "--limit", "many"],
            "error: --limit: expected an integer from 1 to 500, got 'many'",
        ),
        # A value a command checks itself is worded by the command, in the same line.
        (["localnet", "--netuids", "x"], "error: --netuids: not a netuid: 'x'"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2
    assert one_line(result) == message


def test_a_missing_option_keeps_the_usage(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["post-ip"], env=env)
    assert result.exit_code == 2
    assert "Missing option '--ip'" in result.output
    assert "pylon post-ip --help" in result.output


def test_debug_shows_typers_own_report(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["--debug", "serve", "--port", "abc"], env=env)
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.output


def test_pylon_serve_in_a_real_process(env: dict[str, str]) -> None:
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PYLON_")}
    process_env |= {k: v for k, v in env.items() if v} | {"PYLON_PORT": "abc"}
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve"],
        env=process_env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == "error: PYLON_PORT: expected an integer, got 'abc'"


class Color(Enum):
    RED = "red"
    BLUE = "blue"


def small_app() -> typer.Typer:
    """A root like `pylon`'s, with option types Pylon's commands do not use yet."""
    small = typer.Typer(cls=PylonGroup)

    @small.command()
    def paint(
        color: Annotated[Color, typer.Option(envvar="PYLON_COLOR")] = Color.RED,
        ratio: Annotated[float, typer.Option(envvar="PYLON_RATIO", min=0, max=1)] = 0.5,
        loud: Annotated[bool, typer.Option(envvar="PYLON_LOUD")] = False,
    ) -> None:
        """Paint."""

    @small.command()
    def other() -> None:
        """A second command, so the root stays a group."""

    return small


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["paint", "--color", "green"], {}, 2, "error: --color: expected one of red, blue, got 'green'"),
        (
            ["paint"],
            {"PYLON_COLOR": "green"},
            1,
            "error: PYLON_COLOR: expected one of red, blue, got 'green'",
        ),
        (["paint", "--ratio", "2"], {}, 2, "error: --ratio: expected a number from 0 to 1, got '2'"),
        (["paint"], {"PYLON_RATIO": "x"}, 1, "error: PYLON_RATIO: expected a number from 0 to 1, got 'x'"),
        (["paint"], {"PYLON_LOUD": "maybe"}, 1, "error: PYLON_LOUD: expected true or false, got 'maybe'"),
    ],
)
def test_every_option_type_reads_the_same(
    args: list[str], env: dict[str, str], code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `pylon`'s own callback sets the flag on every run; this root has no --debug.
    monkeypatch.setattr(state, "debug", False)
    result = CliRunner().invoke(small_app(), args, env=env)
    assert result.exit_code == code
    assert one_line(result) == message
