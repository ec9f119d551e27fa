"""One `pylon serve` per test module (module-scoped: the reliability probes share it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, base_env, free_port


def module_server(tmp_path_factory: pytest.TempPathFactory, *args: str, **env: str) -> Iterator[LiveServer]:
    """A started `pylon serve` with the test settings (plus `env`), stopped when the module is done."""
    root = tmp_path_factory.mktemp("serve")
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    full_env = {**inherited, **base_env(root / "data"), **env}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = LiveServer(full_env, free_port(), root / "serve.log")
    server.start(*args, timeout=60)
    try:
        yield server
    finally:
        server.stop()
