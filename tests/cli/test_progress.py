"""Long CLI work shows progress on a terminal (Rich status lines) and nothing extra anywhere else."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.db import head_revision
from app.devchain.node.codec import METADATA_FILE, SHIPPED_RUNTIME, read_recorded
from cli.main import app

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MIGRATIONS = ["base -> 0001, initial", "0001 -> 0002, keys", "0002 -> 0003, weights"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The test env file and a private data dir; the caller's other PYLON_* variables are left out."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYLON_")},
        "PYLON_ENV_FILE": str(PROJECT_ROOT / "envs" / "test.env"),
        "PYLON_DATA_DIR": str(tmp_path / "data"),
    }


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `pylon ARGS` with stderr on a pseudo-terminal: the exit code, stdout and what the terminal got."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env=env | {"TERM": "xterm-256color", "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the process has closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    stdout = process.stdout.read() if process.stdout else b""
    # Colours and cursor moves out: the text the terminal showed, line after line.
    text = ANSI.sub("", screen.decode(errors="replace"))
    return process.wait(timeout=60), stdout.decode(), text


def test_db_upgrade_and_downgrade_name_each_migration_on_a_terminal(env: dict[str, str]) -> None:
    head = head_revision()
    assert head is not None
    count = len(list((PROJECT_ROOT / "alembic" / "versions").glob("*.py")))
    code, stdout, screen = on_a_terminal(["db", "upgrade"], env)
    assert code == 0, screen
    assert stdout == ""
    for number, migration in enumerate(MIGRATIONS, start=1):
        assert f"Migrating the database, {number} of {count}: upgrade {migration}" in screen
        assert f"✓ upgrade {migration}" in screen
    assert f"database upgraded to {head} (head)" in screen

    code, _, screen = on_a_terminal(["db", "downgrade", "base"], env)
    assert code == 0, screen
    assert f"Migrating the database, 1 of {count}: downgrade {head} -> " in screen
    assert "✓ downgrade 0001 -> base, initial" in screen
    assert "database downgraded to none" in screen


def test_db_upgrade_prints_only_its_result_elsewhere(env: dict[str, str]) -> None:
    # A process of its own: in this one, another test's app may have configured logging.
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr.splitlines() == [f"database upgraded to {head_revision()} (head)"]


class FakeNode(BaseHTTPRequestHandler):
    """JSON-RPC over HTTP POST: the two calls `dump-metadata` makes, answered from the shipped runtime."""

    metadata, version = read_recorded(resources.files(SHIPPED_RUNTIME))

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = self.metadata if request["method"] == "state_call" else self.version
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_dump_metadata_shows_its_steps_on_a_terminal(env: dict[str, str], node: str, tmp_path: Path) -> None:
    out = tmp_path / "runtime"
    code, stdout, screen = on_a_terminal(
        ["chain", "dump-metadata", "--network", node, "--out", str(out)], env
    )
    assert code == 0, screen
    assert stdout == ""
    assert f"Reading the runtime metadata and version from {node}" in screen
    assert f"KiB of metadata from {node}" in screen
    assert "✓ decoded the metadata" in screen
    assert f"Recorded node-subtensor spec {FakeNode.version['specVersion']}" in screen
    assert (out / METADATA_FILE).exists()


def test_dump_metadata_prints_only_its_result_elsewhere(node: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["chain", "dump-metadata", "--network", node, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Recorded node-subtensor spec"), result.stderr
