"""Developer tasks: `nox -s test`, `nox -s lint`, `nox -s format`, `nox -s bench`, `nox -s soak`.

Each session syncs its virtualenv from uv.lock, so tests run against exactly the locked versions.
"""

import os

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "test"]


# llama-cpp-python builds from its sdist; a portable build (no -march=native) is what uv caches and reuses.
LLAMA_ENV = {"CMAKE_ARGS": "-DGGML_NATIVE=OFF"}


def _sync(session: nox.Session, *extra: str) -> None:
    session.run_install(
        "uv",
        "sync",
        "--frozen",
        "--group",
        "dev",
        *extra,
        env={
            "UV_PROJECT_ENVIRONMENT": session.virtualenv.location,
            "UV_PYTHON_DOWNLOADS": "never",
            **LLAMA_ENV,
        },
    )


@nox.session
def test(session: nox.Session) -> None:
    """Run the test suite; arguments go to pytest (`nox -s test -- -k metrics`).

    The `llama` group (llama-cpp-python's server and gguf) is installed for the slow tests that run a real
    llama.cpp server; its first build takes about 8 minutes on 2 cores, later syncs reuse uv's cache.
    """
    _sync(session, "--group", "llama")
    args = session.posargs or ["-q", "-ra"]
    session.run("pytest", *args, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff format --check, ruff check and mypy."""
    _sync(session)
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("mypy", "app", "cli")


@nox.session(name="format")
def format_(session: nox.Session) -> None:
    """Apply ruff's formatting and safe fixes."""
    _sync(session)
    session.run("ruff", "format", ".")
    session.run("ruff", "check", "--fix", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures (requests/s, latency percentiles, ratios); nothing is asserted."""
    if not os.path.isdir("bench"):
        session.skip("no benchmarks yet (bench/bench_<feature>.py)")
    _sync(session)
    scripts = sorted(
        name for name in os.listdir("bench") if name.startswith("bench_") and name.endswith(".py")
    )
    selected = session.posargs or scripts
    for script in selected:
        session.run("python", os.path.join("bench", script))


@nox.session
def soak(session: nox.Session) -> None:
    """64 connections on the hot routes for PYLON_SOAK_SECONDS (180): errors, p99, RSS per process."""
    _sync(session)
    session.run("python", os.path.join("bench", "soak.py"))
