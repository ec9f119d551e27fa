"""The dashboard in a real headless Chromium against `pylon serve`: sign in, every page fills, no console
errors, a screenshot of each page.

Debian's `chromium` (installed with apt-get when missing), driven by playwright with
`executable_path`: playwright never downloads a browser. Without chromium or playwright the test skips
and says why; under CI (`CI` set) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import PROJECT_ROOT, LiveServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / ".artifacts" / "dashboard"
ADMIN_TOKEN = "test-admin-token"  # envs/test.env
PAGES = ["metagraph", "weights", "usage", "health"]


def ensure_chromium() -> str | None:
    """Debian's chromium, installed with apt-get when missing; None when it cannot be had."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    print("installing chromium (apt-get install -y chromium)...", file=sys.stderr)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the dashboard's browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = ensure_chromium()
    if found is None:
        unavailable("Debian's chromium is not installed and `apt-get install -y chromium` failed")
    assert found is not None
    return found


@pytest.fixture
def server(live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    """`pylon serve` with something on every page: a weights job, and a key that made requests."""
    server = live_server_factory().start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        created = http.post(
            "/api/v1/keys", json={"name": "browser-test", "scopes": ["neurons:read"]}, headers=admin
        )
        assert created.status_code == 201, created.text
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        assert http.get("/api/v1/subnet/1/neurons/latest", headers=key).status_code == 200
        assert http.get("/api/v1/subnet/1/neurons/latest/5NotAHotkey", headers=key).status_code == 404
        neurons = http.get("/api/v1/subnet/1/neurons/latest", headers=admin).json()["neurons"]
        weights = {hotkey: 1.0 for hotkey in list(neurons)[:4]}
        put = http.put("/api/v1/subnet/1/weights", json={"weights": weights}, headers=admin)
        assert put.status_code == 202, put.text
    yield server


def rows(page: Any, name: str) -> int:
    count: int = page.evaluate(f"document.querySelectorAll('#page-{name} tbody tr:not(.empty)').length")
    return count


def wait_for_cell(page: Any, name: str, text: str) -> None:
    """Until a table cell of the page reads `text` (a function, not a string: the page's CSP forbids eval)."""
    page.wait_for_function(
        "([sel, text]) => [...document.querySelectorAll(sel)].some(td => td.textContent === text)",
        arg=[f"#page-{name} tbody td", text],
    )


def test_dashboard_in_chromium(chromium: str, server: LiveServer) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (uv sync --group dev)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {ARTIFACTS}")
    problems: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            page.goto(f"{server.url}/dashboard")
            page.wait_for_selector("#login-form", state="visible")
            page.screenshot(path=str(ARTIFACTS / "login.png"))
            page.fill("#token", ADMIN_TOKEN)
            page.click("#login-form button[type=submit]")

            # The metagraph page: 256 rows sorted by uid, and both charts drawn.
            page.wait_for_function(
                "() => document.querySelectorAll('#page-metagraph tbody tr').length === 256"
            )
            assert ADMIN_TOKEN not in page.url
            assert page.evaluate("sessionStorage.getItem('pylon.dashboard.token')") == ADMIN_TOKEN
            assert page.locator("#page-metagraph svg.chart").count() == 2
            first_uids = page.eval_on_selector_all(
                "#page-metagraph tbody tr td:first-child",
                "cells => cells.slice(0, 3).map(c => c.textContent)",
            )
            assert first_uids == ["0", "1", "2"]
            page.click("#page-metagraph th[data-key=stake] button")
            page.click("#page-metagraph th[data-key=stake] button")  # descending: the largest stake first
            stakes = page.eval_on_selector_all(
                "#page-metagraph tbody tr td:nth-child(3)",
                "cells => cells.map(c => Number(c.textContent.replaceAll(',', '')))",
            )
            assert stakes == sorted(stakes, reverse=True) and stakes[0] > 0
            page.screenshot(path=str(ARTIFACTS / "metagraph.png"))  # header, charts, the table's top
            page.screenshot(path=str(ARTIFACTS / "metagraph-full.png"), full_page=True)

            # Refreshed live: the header's block moves on by itself (a block every 0.2 s, a poll every 5 s).
            status = page.text_content("#status")
            page.wait_for_function(
                "previous => document.getElementById('status').textContent !== previous",
                arg=status,
                timeout=15000,
            )

            page.click("nav a[data-page=weights]")
            page.wait_for_function(
                "() => document.querySelectorAll('#page-weights tbody tr:not(.empty)').length >= 1"
            )
            assert page.locator("#page-weights svg.chart circle.dot").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "weights.png"), full_page=True)

            page.click("nav a[data-page=usage]")
            wait_for_cell(page, "usage", "browser-test")
            page.screenshot(path=str(ARTIFACTS / "usage.png"), full_page=True)

            page.click("nav a[data-page=health]")
            wait_for_cell(page, "health", "database")
            assert page.text_content("#page-health .summary .badge") in ("ok", "degraded")
            page.screenshot(path=str(ARTIFACTS / "health.png"), full_page=True)
            for name in PAGES:
                assert page.get_attribute(f"#page-{name}", "data-loaded") == "true", name
                assert rows(page, name) >= 1, name

            # A reload keeps the session; signing out forgets the token.
            page.reload()
            page.wait_for_function("() => document.querySelectorAll('#page-health tbody tr').length >= 1")
            page.click("#logout")
            page.wait_for_selector("#login-form", state="visible")
            assert page.evaluate("sessionStorage.getItem('pylon.dashboard.token')") is None
        finally:
            browser.close()

    assert not problems, "\n".join(problems)
    for name in ["login", *PAGES]:
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
