"""Known failures become one red line and exit 1; `--debug` shows the traceback instead.

A bad value reads the same wherever it came from: `error: PYLON_PORT: expected an integer, got 'abc'`.
From the command line it is a usage error (exit 2, named by its option); from the environment or an env
file it is a bad setting (exit 1, named by its variable), worded as `app.settings.SettingsError` words it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

if TYPE_CHECKING:
    from rich.status import Status

    # Typer vendors click; its commands are typed with the vendored Context (typer.Context subclasses it).
    from typer._click import Context

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


def fail(message: str, code: int = 1) -> typer.Exit:
    message = _URL_PASSWORD.sub(r"\1***@", message)
    # One line however long (no wrapping at the terminal width); the message itself is never markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code=code)


class PylonGroup(TyperGroup):
    """The root command: a bad option value, from the command line or a `PYLON_*` variable, is one line."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        # The raw command line, to quote the value a subcommand's option refused.
        ctx.meta[_ARGV] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            # A missing option (a subclass) keeps Typer's usage box: it shows the usage and points at --help.
            if state.debug or type(exc) is not typer.BadParameter:
                raise
            message, code = describe_bad_parameter(exc, ctx.meta.get(_ARGV, []))
            raise fail(message, code=code) from None


_ARGV = "pylon.argv"


def describe_bad_parameter(exc: typer.BadParameter, argv: list[str]) -> tuple[str, int]:
    """`NAME: expected WHAT, got 'RAW'` and the exit code: 1 from the environment, 2 from the command line."""
    param = exc.param
    if param is None:
        hint = exc.param_hint if isinstance(exc.param_hint, str) else " / ".join(exc.param_hint or ["value"])
        return f"{hint}: {exc.message}", 2
    expected = _expected(param.type)
    from_env = exc.ctx is not None and param.name is not None and _source_is_environment(exc.ctx, param.name)
    if from_env:
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        name = next((var for var in envvars if var in os.environ), envvars[0] if envvars else param.name)
        raw = os.environ.get(name) if name else None
        code = 1
    else:
        name = next(
            (opt for opt in param.opts if opt.startswith("--")), param.opts[0] if param.opts else None
        )
        raw = _command_line_value(argv, param.opts)
        code = 2
    name = name or param.name or "value"
    if expected is None or raw is None:
        return f"{name}: {exc.message}", code
    return f"{name}: expected {expected}, got {raw!r}", code


def _source_is_environment(ctx: Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


def _command_line_value(argv: list[str], opts: list[str]) -> str | None:
    """The value given to one of `opts` in `argv` (`--port 80` or `--port=80`), if given exactly once."""
    values = []
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in opts and index + 1 < len(argv):
            values.append(argv[index + 1])
        for opt in opts:
            if opt.startswith("--") and arg.startswith(opt + "="):
                values.append(arg[len(opt) + 1 :])
    return values[0] if len(values) == 1 else None


def _expected(param_type: Any) -> str | None:
    """What a value of this option type should be, in the words `app.settings` uses; None for other types.

    Typer's parameter types are the (vendored) click ones; their `name` tells which one it is."""
    name = param_type.name
    if name in ("int range", "float range"):
        if param_type.min_open or param_type.max_open:
            return None
        kind = "an integer" if name == "int range" else "a number"
        low, high = param_type.min, param_type.max
        if low is not None and high is not None:
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        return f"{kind} of at most {high}" if high is not None else kind
    if name == "choice":
        return "one of " + ", ".join(
            str(choice.value if isinstance(choice, Enum) else choice) for choice in param_type.choices
        )
    return _TYPE_WORDS.get(name)


_TYPE_WORDS = {"int": "an integer", "float": "a number", "boolean": "true or false", "uuid": "a UUID"}


class StatusLine:
    """Progress of long work for a human: a Rich status line (and lines for finished steps) on a terminal;
    nothing at all when stderr is not one, so scripts and `--json` callers see only the result."""

    def __init__(self, status: Status | None) -> None:
        self._status = status

    def update(self, message: str) -> None:
        if self._status is not None:
            self._status.update(Text(message, no_wrap=True, overflow="ellipsis"))

    def step_done(self, message: str) -> None:
        if self._status is not None:
            line = Text.assemble(("✓ ", "green"), message)
            err_console.print(line, highlight=False, no_wrap=True, overflow="ellipsis")


@contextlib.contextmanager
def status_line(message: str, *, enabled: bool = True) -> Iterator[StatusLine]:
    """`with status_line("Reading ..") as status: status.update("..")`; `enabled=False` hides it."""
    if not enabled or not err_console.is_terminal:
        yield StatusLine(None)
        return
    with err_console.status(Text(message, no_wrap=True, overflow="ellipsis")) as status:
        yield StatusLine(status)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn known errors into one line; anything else too, unless `--debug`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from app.settings import SettingsError

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, typer.BadParameter):
            # A bad option value a command found itself is a usage error like one Typer found: PylonGroup.
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
