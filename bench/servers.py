"""What every benchmark does around its servers: a free port, wrk, waiting until up, stopping."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str | None:
    """Debian's `wrk`, installed with apt-get when missing; None when it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk)...", file=sys.stderr)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("wrk")


def wait_up(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float = 60,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
) -> None:
    """Until `url` answers `status` (any answer below 500 when None); fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            answered = httpx.get(url, timeout=1, headers=headers).status_code
            if answered == status if status is not None else answered < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (a clean shutdown), then kill after 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
