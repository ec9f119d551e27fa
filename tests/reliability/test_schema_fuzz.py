"""A schema-driven fuzz of the whole API (schemathesis) against the real `pylon serve` (issue 19).

Both ways of calling: the admin token (every route reaches its inputs' checks) and a key with a few scopes
(the others must refuse it as documented). Checked: no 5xx server error, every status and body as the
OpenAPI document says, the documented content type. Bounded by examples and time so it stays within a
minute; `--seed` makes a failure reproducible (schemathesis prints the curl line and the case).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import PROJECT_ROOT, LiveServer
from tests.reliability.conftest import module_server

ADMIN = "test-admin-token"  # envs/test.env
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
# HTML pages and Swagger's own assets are not the API.
EXCLUDED = r"^/(dashboard|schema)(/|$)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from module_server(tmp_path_factory)


@pytest.fixture(scope="module")
def scoped_key(server: LiveServer) -> str:
    body = {"name": "fuzz", "scopes": ["neurons:read", "inference"], "netuids": [1]}
    created = httpx.post(
        f"{server.url}/api/v1/keys", json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def fuzz(server: LiveServer, token: str, phases: str, max_time: int) -> None:
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/schema/openapi.json"),
        *("--header", f"Authorization: Bearer {token}"),
        *("--checks", CHECKS, "--phases", phases, "--max-examples", "8", "--max-time", str(max_time)),
        *("--exclude-path-regex", EXCLUDED, "--seed", "19", "--no-shrink", "--request-timeout", "10"),
        *("--generation-deterministic", "--warnings", "off"),
    ]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=max_time + 120)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-4000:]
    assert "Internal Server Error" not in server.log()


def test_fuzz_as_admin(server: LiveServer) -> None:
    # The coverage phase: boundary values of every parameter and field (2^64, -1, empty, wrong types).
    fuzz(server, ADMIN, "examples,coverage", max_time=20)


def test_fuzz_with_a_scoped_key(server: LiveServer, scoped_key: str) -> None:
    fuzz(server, scoped_key, "fuzzing", max_time=12)
