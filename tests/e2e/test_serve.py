"""The real `pylon serve` (granian, separate worker processes) answering real HTTP over loopback."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import LiveServer

METRICS_HEADERS = {"Authorization": "Bearer test-metrics-token"}
ServerFactory = Callable[..., LiveServer]


def counter(exposition: str, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def metrics_dir(server: LiveServer) -> Path:
    assert server.process is not None
    return Path(server.env["PYLON_DATA_DIR"]) / "metrics" / str(server.process.pid)


def test_serve_answers_health_schema_metrics_and_request_ids(live_server_factory: ServerFactory) -> None:
    server = live_server_factory(PYLON_LOG_LEVEL="INFO").start()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert len(health.headers["x-request-id"]) == 32
        assert client.get("/health", headers={"X-Request-ID": "e2e-1"}).headers["x-request-id"] == "e2e-1"

        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"]["status"] == "ok"

        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        assert schema.json()["info"]["title"] == "Pylon"
        assert "/health" in schema.json()["paths"]
        assert client.get("/schema/swagger").status_code == 200

        missing = client.get("/no/such/path")
        assert missing.status_code == 404
        assert "x-request-id" in missing.headers

        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=METRICS_HEADERS)
        assert metrics.status_code == 200
        text = metrics.text
        assert counter(text, "pylon_requests_total", path="/health", status_code="200", app_name="pylon") >= 2
        assert counter(text, "pylon_requests_total", path="<unmatched>", status_code="404") == 1
        assert counter(text, "pylon_requests_total", path="/metrics", status_code="401") == 1
        assert "process_resident_memory_bytes" in text

    assert metrics_dir(server).is_dir()
    server.stop(signal.SIGTERM)
    assert server.process is not None and server.process.returncode == 0, server.log()
    log = server.log()
    assert "Traceback" not in log
    # Secrets from envs/test.env never reach the log, and the scratch space is cleaned up.
    assert "test-metrics-token" not in log and "test-admin-token" not in log
    assert not metrics_dir(server).exists()
    # granian's own records come through Pylon's JSON formatter.
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(record.get("logger", "").startswith("_granian") for record in records), log
    assert not any("Context impl" in record.get("event", "") for record in records)


def test_two_workers_share_one_metrics_view(live_server_factory: ServerFactory) -> None:
    """With `--workers 2` each worker counts in its own files; /metrics adds them all up, whoever answers."""
    server = live_server_factory().start("--workers", "2")

    def hit(_: int) -> int:
        # A new connection per request, so the kernel spreads them over both workers' accept loops.
        return httpx.get(f"{server.url}/health", timeout=5).status_code

    sent = 0
    folder = metrics_dir(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Bounded: stop as soon as both workers have written samples.
        for _ in range(20):
            assert set(pool.map(hit, range(40))) == {200}
            sent += 40
            pids = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("counter_*.db")}
            if len(pids) >= 2:
                break
    assert len(pids) == 2, f"only {pids} answered {sent} requests"

    def total() -> float:
        text = httpx.get(f"{server.url}/metrics", headers=METRICS_HEADERS, timeout=5).text
        return counter(text, "pylon_requests_total", path="/health", status_code="200")

    # Workers write their buffered counts once a second (app.metrics_buffer): wait for that, bounded.
    expected = float(sent + 1)  # the /health probe of start() included
    deadline = time.monotonic() + 10
    while total() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    # From then on every answer, from either worker, counts all requests of both.
    assert {total() for _ in range(6)} == {expected}
    server.stop()
    assert server.process is not None and server.process.returncode == 0, server.log()


def test_serve_reload_starts_and_serves(live_server_factory: ServerFactory) -> None:
    """--reload runs spawned workers under granian's file watcher (editing app/ was checked by hand)."""
    server = live_server_factory(PYLON_LOG_LEVEL="INFO").start("--reload", timeout=60)
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    server.stop()
    assert server.process is not None and server.process.returncode == 0, server.log()
    log = server.log()
    assert "Traceback" not in log
    assert "Unexpected exit" not in log
    # Spawned workers import alembic after logging is set up; its plugin chatter stays quiet.
    assert "setup plugin" not in log


def test_serve_refuses_a_bad_setting_in_one_line(live_server_factory: ServerFactory) -> None:
    server = live_server_factory(PYLON_LOG_FORMAT="yaml")
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start(timeout=20)
    assert server.process is not None and server.process.returncode == 1
    assert server.log().strip() == "error: PYLON_LOG_FORMAT: expected one of auto, json, console, got 'yaml'"


def test_serve_logs_the_hotkey_it_signs_with_once(live_server_factory: ServerFactory) -> None:
    from app.settings import load_settings
    from app.weights.identities import load_identities

    server = live_server_factory(PYLON_LOG_LEVEL="INFO", PYLON_WORKERS="2").start()
    hotkey = load_identities(load_settings(server.env))["default"].hotkey_ss58
    server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if '"signing_identity"' in line]
    assert len(lines) == 1, server.log()
    assert lines[0]["hotkey"] == hotkey and lines[0]["identity"] == "default"
    assert lines[0]["epistula_signed_for"] == hotkey
    # Public addresses only: nothing from the wallet's key files.
    wallets = Path(server.env["PYLON_DATA_DIR"]) / "wallets"
    keyfile = json.loads((wallets / "pylon-dev" / "hotkeys" / "default").read_text())
    assert keyfile["privateKey"] not in server.log() and keyfile["secretPhrase"] not in server.log()
