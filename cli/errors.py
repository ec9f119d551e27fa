"""Known failures become one red line and exit 1; `--debug` shows the traceback instead."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)
out_console = Console()

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A failure the user can act on; its message is all they see."""


class _State:
    debug = False


state = _State()


# `scheme://user:password@`: an exception's message may quote a URL with its credentials.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)\S+@")


def fail(message: str) -> typer.Exit:
    message = _URL_PASSWORD.sub(r"\1***@", message)
    # One line however long (no wrapping at the terminal width); the message itself is never markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code=1)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn known errors into one line; anything else too, unless `--debug`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from app.settings import SettingsError

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except (CliError, SettingsError) as exc:
            if state.debug:
                raise
            raise fail(str(exc)) from None
        except Exception as exc:
            if state.debug:
                raise
            raise fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)") from None

    return wrapper


def cli_settings(env_file: str | None, **overrides: Any):  # type: ignore[no-untyped-def]
    """Settings for a CLI command: the environment over the env file (`--env-file` or `PYLON_ENV_FILE`)."""
    from app.settings import load_settings

    return load_settings(env_file=env_file)
